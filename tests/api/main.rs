//! Integration tests: one binary, a real server per test, real HTTP.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

mod admission;
mod api_keys;
mod audit;
mod cancellation;
mod cli;
mod concurrency;
mod emails;
mod errors;
mod helpers;
mod ledger_properties;
mod listing;
mod managed_accounts;
mod openapi;
mod payments;
mod pricing;
mod usage;
