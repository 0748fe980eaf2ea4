//! Outcomes of account operations that are not success.

/// Why an account operation did not happen. Each variant names an outcome the caller can act
/// on; `Database` and `Internal` are failures of ours and surface as opaque 500s.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No such account, or not one the caller may see.
    #[error("account not found")]
    NotFound,
    /// Another account already uses this email (compared case-insensitively).
    #[error("the email address is already in use")]
    EmailTaken,
    /// The caller is not an approved manager.
    #[error("the account is not an approved manager")]
    NotApprovedManager,
    /// Managed accounts cannot have managed accounts (one level only).
    #[error("a managed account cannot manage accounts")]
    ManagedCannotManage,
    /// No email was given and none can be derived from the manager's address (it is too
    /// long to take a `+tag`).
    #[error(
        "no email address can be generated from the manager's address; give an email for the managed account"
    )]
    EmailRequired,
    /// The manager holds as many managed accounts as the operator allows.
    #[error("the manager already has its limit of {limit} managed accounts")]
    ManagedAccountLimitReached {
        /// The limit in force.
        limit: i64,
    },
    /// The allocation would exceed the manager's channel pool.
    #[error(
        "channel_limit {requested} exceeds what can be allocated: {available} of the pool of {pool} channels remain for this account"
    )]
    ChannelPoolExceeded {
        /// The requested limit.
        requested: i64,
        /// The most this account could be given.
        available: i64,
        /// The manager's whole pool.
        pool: i64,
    },
    /// `rollup_billing` is fixed when the account is created.
    #[error("rollup_billing is fixed when a managed account is created and cannot be changed")]
    RollupBillingImmutable,
    /// A cancelled account can no longer change state.
    #[error("the account is cancelled and can no longer be changed")]
    Cancelled,
    /// The operation does not fit the account (an operator mistake, e.g. approving a
    /// managed account as a manager); the text says why.
    #[error("{0}")]
    NotAllowed(String),
    /// A query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Something else of ours failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}
