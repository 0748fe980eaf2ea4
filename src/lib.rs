//! Steward: account hierarchy and billing for managed accounts.
//!
//! The crate is a library with a thin binary on top (`src/main.rs`). Domain modules
//! (`accounts`, `keys`, `billing`) know nothing of HTTP; the `http` module is the only
//! place that speaks the Telnyx v2 wire format, `portal` serves the same domain as HTML
//! pages, and `admin` is the operator CLI.

pub mod accounts;
pub mod admin;
pub mod admission;
pub mod audit;
pub mod billing;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod http;
pub mod invoices;
pub mod keys;
pub mod ledger;
pub mod money;
pub mod payments;
pub mod platform;
pub mod portal;
pub mod pricing;
pub mod rating;
pub mod reports;
pub mod sensitive;
pub mod signing;
pub mod telemetry;
pub mod upgrade;
pub mod usage;
