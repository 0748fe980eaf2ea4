//! The command line: `steward serve` and the operator's `steward admin …` verbs.

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::payments::config as payments_config;

/// Steward: account hierarchy and billing for managed accounts.
#[derive(Debug, Parser)]
#[command(name = "steward", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Operator commands that act on the database directly.
    Admin(AdminArgs),
}

/// Flags of `steward serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "STEWARD_LISTEN", default_value = config::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// Database URL (sqlite:… or postgres://…).
    #[arg(long, env = "STEWARD_DATABASE_URL", default_value = config::DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Per-request time limit in milliseconds.
    #[arg(long, env = "STEWARD_REQUEST_TIMEOUT_MS", default_value_t = config::DEFAULT_REQUEST_TIMEOUT_MS)]
    pub request_timeout_ms: u64,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "STEWARD_BODY_LIMIT_BYTES", default_value_t = config::DEFAULT_BODY_LIMIT_BYTES)]
    pub body_limit_bytes: usize,
    /// Time a client has to send a complete request head, in milliseconds.
    #[arg(long, env = "STEWARD_HEADER_READ_TIMEOUT_MS", default_value_t = config::DEFAULT_HEADER_READ_TIMEOUT_MS)]
    pub header_read_timeout_ms: u64,
    /// Time an idle keep-alive connection stays open, in milliseconds.
    #[arg(long, env = "STEWARD_KEEP_ALIVE_TIMEOUT_MS", default_value_t = config::DEFAULT_KEEP_ALIVE_TIMEOUT_MS)]
    pub keep_alive_timeout_ms: u64,
    /// Time requests in flight get to finish after SIGTERM or Ctrl-C, in milliseconds.
    #[arg(long, env = "STEWARD_SHUTDOWN_GRACE_MS", default_value_t = config::DEFAULT_SHUTDOWN_GRACE_MS)]
    pub shutdown_grace_ms: u64,
    /// Also serve `GET /metrics` on this address, without a key (bind it to a private
    /// interface). On the main address `/metrics` needs an operator key.
    #[arg(long, env = "STEWARD_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// API keys kept authenticated in memory; 0 reads every request's key from the database.
    /// Any change to access reaches every server within 250 ms whatever the setting.
    #[arg(long, env = "STEWARD_AUTH_CACHE_ENTRIES", default_value_t = crate::accounts::access::DEFAULT_CACHE_ENTRIES)]
    pub auth_cache_entries: usize,
    /// A reverse proxy or load balancer (an address or a network, e.g. 10.0.0.0/8) whose
    /// `X-Forwarded-For` names the client: the bad-key throttle and the portal's sign-in
    /// backoff then count clients, not the proxy. Repeat the flag, or separate with commas.
    /// Without it the header is ignored (anyone can send it).
    #[arg(long = "trusted-proxy", value_name = "NETWORK", env = "STEWARD_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = crate::http::serve::forwarded::parse_network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How often this server reconciles pending card payments and runs due auto-recharges,
    /// in milliseconds; 0 runs none (then run `steward admin reconcile-payments`).
    #[arg(long, env = "STEWARD_PAYMENT_TASKS_INTERVAL_MS", default_value_t = payments_config::DEFAULT_TASKS_INTERVAL_MS)]
    pub payment_tasks_interval_ms: u64,
    /// The card gateway.
    #[command(flatten)]
    pub payments: PaymentArgs,
}

/// The card gateway's flags, shared by `serve` and the operator verbs that call it.
#[derive(Debug, Args)]
pub struct PaymentArgs {
    /// The card gateway: `sandbox` (the built-in test gateway; test cards only).
    #[arg(
        long,
        global = true,
        env = "STEWARD_PAYMENT_GATEWAY",
        default_value = "sandbox"
    )]
    pub payment_gateway: String,
    /// Time limit of one call to the gateway, in milliseconds; past it the outcome is
    /// unknown and the payment stays pending until reconciled.
    #[arg(long, global = true, env = "STEWARD_PAYMENT_GATEWAY_TIMEOUT_MS", default_value_t = payments_config::DEFAULT_GATEWAY_TIMEOUT_MS)]
    pub payment_gateway_timeout_ms: u64,
    /// The sandbox's answer time of every call, in milliseconds.
    #[arg(long, global = true, env = "STEWARD_SANDBOX_LATENCY_MS", default_value_t = payments_config::DEFAULT_SANDBOX_LATENCY_MS)]
    pub sandbox_latency_ms: u64,
    /// The sandbox's answer time of its slow test card, in milliseconds.
    #[arg(long, global = true, env = "STEWARD_SANDBOX_SLOW_CHARGE_MS", default_value_t = payments_config::DEFAULT_SANDBOX_SLOW_CHARGE_MS)]
    pub sandbox_slow_charge_ms: u64,
    /// The sandbox's card fingerprint key (hex, at least 32 bytes); a built-in key by default.
    #[arg(
        long,
        global = true,
        env = "STEWARD_SANDBOX_FINGERPRINT_KEY",
        hide_env_values = true
    )]
    pub sandbox_fingerprint_key: Option<String>,
}

impl PaymentArgs {
    /// The payments configuration these flags describe; `tasks_interval_ms` is serve's.
    pub fn config(
        &self,
        tasks_interval_ms: u64,
    ) -> Result<crate::payments::PaymentsConfig, String> {
        let key = match &self.sandbox_fingerprint_key {
            Some(hex) => payments_config::FingerprintKey::parse_hex(hex)?,
            None => payments_config::FingerprintKey::default(),
        };
        Ok(crate::payments::PaymentsConfig {
            gateway: payments_config::GatewayKind::parse(&self.payment_gateway)?,
            gateway_timeout_ms: self.payment_gateway_timeout_ms,
            sandbox_latency_ms: self.sandbox_latency_ms,
            sandbox_slow_charge_ms: self.sandbox_slow_charge_ms,
            sandbox_fingerprint_key: key,
            tasks_interval_ms,
        })
    }
}

/// `steward admin …`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Database URL (sqlite:… or postgres://…).
    #[arg(long, global = true, env = "STEWARD_DATABASE_URL", default_value = config::DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// The card gateway (for the payment verbs).
    #[command(flatten)]
    pub payments: PaymentArgs,
    /// The operator verb.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Operator verbs. Each prints one JSON object on success.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a standard account, or an approved manager with `--manager`.
    CreateAccount {
        /// Sign-in and contact email; unique across the platform.
        #[arg(long)]
        email: String,
        /// Organization name.
        #[arg(long)]
        business_name: String,
        /// Approve the account as a manager at once.
        #[arg(long)]
        manager: bool,
        /// How many managed accounts the manager may hold (default 1000).
        #[arg(long)]
        max_managed_accounts: Option<i64>,
        /// The manager's pool of global outbound channels (default 0: feature off).
        #[arg(long)]
        allocatable_channels: Option<i64>,
        /// A portal password (8 to 256 characters); prefer --password-stdin.
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the portal password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Approve an existing standard account as a manager.
    ApproveManager {
        /// Account id.
        #[arg(long)]
        account: String,
    },
    /// Withdraw manager approval; its managed accounts stay bound to it.
    RevokeManager {
        /// Account id.
        #[arg(long)]
        account: String,
    },
    /// Set how many managed accounts a manager may hold.
    SetManagedAccountLimit {
        /// Manager account id.
        #[arg(long)]
        account: String,
        /// The new limit (≥ 0).
        #[arg(long)]
        limit: i64,
    },
    /// Set a manager's pool of global outbound channels.
    SetChannelPool {
        /// Manager account id.
        #[arg(long)]
        account: String,
        /// Channels the manager may allocate to its managed accounts (≥ 0).
        #[arg(long)]
        channels: i64,
    },
    /// Cancel an account for good: its keys are revoked and it takes no further change.
    CancelAccount {
        /// Account id.
        #[arg(long)]
        account: String,
        /// For a manager: cancel its managed accounts in the same step.
        #[arg(long)]
        include_managed: bool,
        /// Also free its email, so that a new (e.g. managed) account can use it.
        #[arg(long)]
        release_email: bool,
    },
    /// Free a cancelled account's email; the account keeps its history under a tombstone address.
    ReleaseEmail {
        /// Account id (must be cancelled).
        #[arg(long)]
        account: String,
    },
    /// Set (or replace) an account's portal password.
    SetPassword {
        /// Account id.
        #[arg(long)]
        account: String,
        /// The password (8 to 256 characters); prefer --password-stdin, which keeps it out of
        /// the process list and shell history.
        #[arg(
            long,
            conflicts_with = "password_stdin",
            required_unless_present = "password_stdin"
        )]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Import a price list from CSV (`product,prefix,rate,initial_increment_s,subsequent_increment_s`).
    ImportPriceList {
        /// The CSV file.
        #[arg(long)]
        file: std::path::PathBuf,
        /// A name for the list.
        #[arg(long)]
        name: String,
        /// Make it the platform default.
        #[arg(long, conflicts_with = "assign_to")]
        platform_default: bool,
        /// Assign it to this account.
        #[arg(long)]
        assign_to: Option<String>,
        /// From when it applies (RFC 3339; default now).
        #[arg(long)]
        effective_from: Option<String>,
    },
    /// Assign an imported price list to an account or as the platform default.
    AssignPriceList {
        /// The price list id.
        #[arg(long)]
        price_list: String,
        /// Make it the platform default.
        #[arg(long, conflicts_with = "account")]
        platform_default: bool,
        /// The account.
        #[arg(long)]
        account: Option<String>,
        /// From when it applies (RFC 3339; default now).
        #[arg(long)]
        effective_from: Option<String>,
    },
    /// Set an account's credit limit.
    SetCreditLimit {
        /// Account id.
        #[arg(long)]
        account: String,
        /// Decimal amount ≥ 0, e.g. 100.00.
        #[arg(long)]
        amount: String,
    },
    /// Credit money to an account's balance.
    Credit {
        /// Account id.
        #[arg(long)]
        account: String,
        /// Decimal amount > 0.
        #[arg(long)]
        amount: String,
        /// Why (audited).
        #[arg(long)]
        reason: String,
        /// Makes the command safe to repeat.
        #[arg(long)]
        idempotency_key: String,
    },
    /// Adjust an account's balance by a signed amount.
    Adjust {
        /// Account id.
        #[arg(long)]
        account: String,
        /// Decimal amount ≠ 0 (negative takes money away).
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        /// Why (audited).
        #[arg(long)]
        reason: String,
        /// Makes the command safe to repeat.
        #[arg(long)]
        idempotency_key: String,
    },
    /// Mint a key for network elements (usage ingestion, call admission).
    CreateIngestKey,
    /// Mint a key for the operator API (`/admin/v1`).
    CreateOperatorKey,
    /// Revoke an ingest or operator key (every server refuses it within 250 ms).
    RevokeServiceKey {
        /// The key's id (as `create-ingest-key` or `create-operator-key` printed it).
        #[arg(long)]
        id: String,
    },
    /// Re-derive every balance from postings and check every ledger invariant.
    VerifyLedger,
    /// Charge the usage kept in suspense that can now be rated (each event once, through
    /// the ingestion path); what still cannot stays, with its new reason.
    RerateSuspended {
        /// Only events suspended for this reason: no_price_list, no_rate or unknown_account.
        #[arg(long)]
        reason: Option<String>,
        /// Only events of this account id.
        #[arg(long)]
        account: Option<String>,
    },
    /// Copy the whole platform from this database into a new, empty one (e.g. from the
    /// embedded SQLite file to PostgreSQL), then verify the copy's ledger.
    CopyDatabase {
        /// The source database URL (default: `--database-url`).
        #[arg(long)]
        from: Option<String>,
        /// The target database URL (sqlite:… or postgres://…); it must hold no platform yet.
        #[arg(long)]
        to: String,
    },
    /// Settle pending card payments and refunds with the gateway, then run due
    /// auto-recharges (what every server does on its own every few seconds).
    ReconcilePayments,
    /// Refund (part of) a successful card payment to its card.
    RefundPayment {
        /// The payment (stored payment transaction) id.
        #[arg(long)]
        payment: String,
        /// Dollars and cents; all that is left of the payment when absent.
        #[arg(long)]
        amount: Option<String>,
        /// Why (audited).
        #[arg(long)]
        reason: String,
    },
    /// List the carding blocks in force (every block ever set with --all).
    PaymentBlocks {
        /// Include lifted and expired blocks.
        #[arg(long)]
        all: bool,
    },
    /// Lift a carding block now; the counts of its card, account or tree start afresh.
    LiftBlock {
        /// The block id.
        #[arg(long)]
        block: String,
    },
    /// Show the payment settings in force, with their defaults.
    PaymentSettings,
    /// Change a payment setting (amount bounds, carding thresholds and windows,
    /// auto-recharge retries) for every server.
    SetPaymentSetting {
        /// The setting's name (see payment-settings).
        #[arg(long)]
        name: String,
        /// The new value: dollars and cents for amounts, a count (0 turns a rule off), or
        /// seconds.
        #[arg(long)]
        value: String,
    },
    /// Close a month (UTC) for every paying account, or for one: writes each invoice once
    /// (repeating the command answers the existing ones). A month not yet ended is refused.
    CloseInvoices {
        /// The month, YYYY-MM.
        #[arg(long)]
        period: String,
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
    },
    /// Set the platform's name, printed on invoices closed from now on.
    SetPlatformName {
        /// The name (1 to 255 characters).
        #[arg(long)]
        name: String,
    },
}
