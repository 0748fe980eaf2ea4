//! Money in: payment methods (cards), card top-ups that resist carding, auto-recharge, and
//! the gateway boundary with its built-in sandbox.
//!
//! Invariants:
//! - no card number or security code is stored or logged: the gateway tokenizes, Steward
//!   keeps the token, brand, last four digits, expiry and a keyed fingerprint;
//! - an attempt is recorded before the gateway is called, and a success is posted exactly
//!   once (one `card_payment` journal entry, `platform:card_payments` → `balance:<account>`):
//!   settling is a conditional update of the pending attempt in the posting transaction, so a
//!   retry, the reconciler and a second server can race and only one posts;
//! - carding rules are decided under row locks in the database, so they hold across servers,
//!   and a refused attempt never reaches the gateway;
//! - a rollup-billing account has no money of its own, hence no cards, top-ups or
//!   auto-recharge; a cancelled account takes no change.
//!
//! Background work is a set of functions that do one unit each ([`Payments::reconcile_once`],
//! [`auto_recharge::process_once`]), run by [`tasks`] on a cadence and by the operator's CLI.

pub mod amount;
pub mod attempts;
pub mod auto_recharge;
pub mod card;
pub mod carding;
pub mod config;
mod error;
pub mod gateway;
pub mod methods;
pub mod refunds;
pub mod sandbox;
pub mod settings;
pub mod tasks;
mod topup;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;

pub use self::config::PaymentsConfig;
pub use self::error::PaymentError;
pub use self::gateway::PaymentGateway;
pub use self::topup::{ReconcileReport, TopUp, TopUpRequest};
pub use self::verify::{PaymentViolation, VerifyReport, verify};
use crate::accounts::{self, Account, AccountId, AccountKind, AccountStatus};
use crate::clock::ClockHandle;
use crate::db::Db;

/// The payments service: the database, the clock, the gateway and its configuration.
#[derive(Debug, Clone)]
pub struct Payments {
    db: Db,
    clock: ClockHandle,
    gateway: Arc<dyn PaymentGateway>,
    config: PaymentsConfig,
}

impl Payments {
    /// The service with the configured gateway.
    pub fn new(db: Db, clock: ClockHandle, config: PaymentsConfig) -> Self {
        let gateway: Arc<dyn PaymentGateway> = match config.gateway {
            config::GatewayKind::Sandbox => Arc::new(sandbox::SandboxGateway::new(
                db.clone(),
                Arc::clone(&clock),
                &config,
            )),
        };
        Self {
            db,
            clock,
            gateway,
            config,
        }
    }

    /// The gateway in use.
    pub fn gateway(&self) -> &dyn PaymentGateway {
        self.gateway.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &PaymentsConfig {
        &self.config
    }

    fn now_ms(&self) -> i64 {
        crate::clock::to_epoch_ms(self.clock.now())
    }

    /// Runs a gateway call under the configured time limit; a call cut off counts as a
    /// gateway timeout (outcome unknown).
    async fn call<T>(
        &self,
        call: gateway::GatewayFuture<'_, T>,
    ) -> Result<T, gateway::GatewayError> {
        tokio::time::timeout(Duration::from_millis(self.config.gateway_timeout_ms), call)
            .await
            .unwrap_or(Err(gateway::GatewayError::Timeout))
    }

    /// Says at start-up which gateway takes the payments; the sandbox collects no money.
    pub fn announce(&self) {
        match self.config.gateway {
            config::GatewayKind::Sandbox => tracing::warn!(
                payment.gateway = self.gateway.name(),
                "Card payments go to the sandbox gateway: it accepts only its test cards and collects no real money"
            ),
        }
    }

    /// Turns card entry into a token (the sandbox's stand-in for hosted fields). Nothing of
    /// the card is stored by Steward.
    pub async fn tokenize(
        &self,
        card: gateway::CardEntry,
    ) -> Result<gateway::TokenizedCard, PaymentError> {
        match self.call(self.gateway.tokenize(card)).await {
            Ok(tokenized) => Ok(tokenized),
            Err(gateway::GatewayError::InvalidCard(reason)) => {
                Err(PaymentError::InvalidCard(reason))
            }
            Err(gateway::GatewayError::Unsupported) => Err(PaymentError::NotAllowed(
                "card entry goes to the payment processor's hosted fields, not to Steward"
                    .to_owned(),
            )),
            Err(error) => {
                tracing::warn!(error = %error, "Tokenization failed: {error}");
                Err(PaymentError::GatewayUnavailable)
            }
        }
    }
}

/// Refuses accounts that cannot pay: rollup billing (no money of their own), cancelled
/// (no change), blocked by the operator.
pub fn ensure_payable(account: &Account) -> Result<(), PaymentError> {
    if account.rollup_billing {
        return Err(PaymentError::RollupBilling);
    }
    match account.status {
        AccountStatus::Cancelled => Err(PaymentError::Cancelled),
        AccountStatus::Blocked => Err(PaymentError::NotAllowed(
            "the account is blocked by the platform operator".to_owned(),
        )),
        AccountStatus::Active | AccountStatus::Disabled => Ok(()),
    }
}

/// Locks an account's row for the rest of the transaction and reads it, refusing those that
/// cannot pay.
async fn lock_payer(conn: &mut AnyConnection, id: AccountId) -> Result<Account, PaymentError> {
    if !accounts::repo::lock(conn, id).await? {
        return Err(PaymentError::AccountNotFound);
    }
    let account = accounts::repo::find(conn, id)
        .await?
        .ok_or(PaymentError::AccountNotFound)?;
    ensure_payable(&account)?;
    Ok(account)
}

/// The manager tree of an account: its manager for a managed account, else itself.
pub fn tree_of(account: &Account) -> AccountId {
    match (account.kind, account.manager_id) {
        (AccountKind::Managed, Some(manager)) => manager,
        _ => account.id,
    }
}
