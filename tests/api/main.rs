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
mod auth_cache;
mod auth_throttle;
mod authorization;
mod cancellation;
mod cli;
mod concurrency;
mod connections;
mod copy_database;
mod crash;
mod emails;
mod errors;
mod headers;
mod helpers;
mod invoices;
mod ledger_properties;
mod ledger_verify;
mod listing;
mod managed_accounts;
mod metrics;
mod nul;
mod openapi;
mod parsing;
mod payments;
mod portal;
mod price_leak;
mod pricing;
mod reports;
mod statuses;
mod suspense;
mod usage;
