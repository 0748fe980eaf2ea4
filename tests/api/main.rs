//! Integration tests: one binary, a real server per test, real HTTP.

mod api_keys;
mod cli;
mod concurrency;
mod errors;
mod helpers;
mod listing;
mod managed_accounts;
mod openapi;
