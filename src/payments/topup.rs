//! Top-ups: a card charge that credits the account, in three atomic phases around the one
//! call to the gateway (recorded → charged → settled), and the reconciliation of attempts
//! whose answer was lost.
//!
//! 1. *Admit* (one transaction): lock the account, check its state, the amount and every
//!    carding rule, and record the attempt as pending. A refusal never reaches the gateway.
//! 2. *Charge*: the gateway, with the attempt id as its idempotency key, under a time limit.
//! 3. *Settle* (one transaction): mark the pending attempt settled — a conditional update, so
//!    only one of the request, a retry, the reconciler or another server does it — and, for a
//!    success, post its one journal entry in the same transaction.
//!
//! A crash or a lost answer between 2 and 3 leaves a pending attempt; a retry with the same
//! `Idempotency-Key`, the background reconciler or `steward admin reconcile-payments` asks the
//! gateway for the outcome by key and settles it.

use sha2::{Digest, Sha256};

use super::attempts::{self, Attempt, AttemptStatus, NewAttempt};
use super::carding::{self, Candidate, Refusal, Subjects};
use super::gateway::{ChargeOutcome, ChargeRequest};
use super::{PaymentError, Payments, lock_payer, methods, settings, tree_of};
use crate::accounts::listing::{Page, PageRequest};
use crate::accounts::{Account, AccountId};
use crate::audit::{self, Actor, Change};
use crate::billing::IdempotencyKey;
use crate::ledger::{self, Book, Entry, EntryHeader, EntryKind};
use crate::money::Money;

/// Pending attempts reconciled in one run: bounds the time one run holds the task.
const RECONCILE_BATCH_MAX: u32 = 100;

/// A top-up to make.
#[derive(Debug, Clone)]
pub struct TopUpRequest {
    /// The account to credit.
    pub account: AccountId,
    /// How much (dollars and cents).
    pub amount: Money,
    /// The card to charge; the default card when absent.
    pub payment_method_id: Option<String>,
    /// Makes retries safe: the same key answers the first attempt's outcome.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Who asks.
    pub actor: Actor,
}

/// The answer to a top-up: the attempt as it stands, and whether it is an earlier
/// attempt's answer replayed for a retry.
#[derive(Debug, Clone)]
pub struct TopUp {
    /// The attempt.
    pub attempt: Attempt,
    /// True when answered from an earlier request with the same key.
    pub replayed: bool,
}

/// What one reconciliation run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    /// Attempts settled.
    pub settled: u64,
    /// Attempts still pending (no answer from the gateway yet).
    pub still_pending: u64,
    /// Refunds settled.
    pub refunds_settled: u64,
}

/// What admission decided.
pub(crate) enum Admitted {
    /// Recorded as pending: charge it.
    Charge {
        /// The attempt id.
        attempt_id: String,
        /// The card's token.
        token: String,
        /// How much.
        amount: Money,
    },
    /// A carding rule refused (the transaction holds any block it set: commit it).
    Refused(Refusal),
    /// The account already has an attempt with this key (a concurrent retry).
    KeyTaken,
}

/// What admission needs.
pub(crate) struct Admission<'a> {
    pub(crate) account: AccountId,
    pub(crate) amount: Money,
    pub(crate) payment_method_id: Option<&'a str>,
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) request_sha256: &'a str,
    pub(crate) auto_recharge: bool,
    pub(crate) actor: &'a Actor,
}

/// Digest of what a request asks for: a retry must ask for the same.
pub(crate) fn request_digest(amount: Money, payment_method_id: Option<&str>) -> String {
    let text = format!(
        "top_up|{}|{}",
        amount.nanos(),
        payment_method_id.unwrap_or("default")
    );
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Payments {
    /// Tops up an account by card. Declines and processor failures come back as settled
    /// attempts; an unknown outcome as a pending one.
    #[tracing::instrument(name = "steward.payments.top_up", skip_all, fields(account.id = %request.account))]
    pub async fn top_up(&self, request: TopUpRequest) -> Result<TopUp, PaymentError> {
        let digest = request_digest(request.amount, request.payment_method_id.as_deref());
        let key = request.idempotency_key.as_ref().map(AsRef::as_ref);
        if let Some(key) = key
            && let Some(earlier) = self.earlier(request.account, key, &digest).await?
        {
            return Ok(earlier);
        }
        let admission = Admission {
            account: request.account,
            amount: request.amount,
            payment_method_id: request.payment_method_id.as_deref(),
            idempotency_key: key,
            request_sha256: &digest,
            auto_recharge: false,
            actor: &request.actor,
        };
        let mut tx = self.db.begin_write().await?;
        let admitted = self.admit_in_tx(&mut tx, &admission).await?;
        tx.commit().await?;
        match admitted {
            Admitted::Charge {
                attempt_id,
                token,
                amount,
            } => {
                let attempt = self.charge(&attempt_id, token, amount).await?;
                Ok(TopUp {
                    attempt,
                    replayed: false,
                })
            }
            Admitted::Refused(refusal) => Err(PaymentError::Refused(refusal)),
            Admitted::KeyTaken => {
                let key = key.unwrap_or_default();
                self.earlier(request.account, key, &digest)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the attempt holding the key vanished").into())
            }
        }
    }

    /// The earlier attempt made with `key`, brought up to date (a pending one is asked
    /// about at the gateway); a different request with the same key is refused.
    async fn earlier(
        &self,
        account: AccountId,
        key: &str,
        digest: &str,
    ) -> Result<Option<TopUp>, PaymentError> {
        let found = {
            let mut conn = self.db.read.acquire().await?;
            attempts::find_by_key(&mut conn, account, key).await?
        };
        let Some(attempt) = found else {
            return Ok(None);
        };
        if attempt.request_sha256 != digest {
            return Err(PaymentError::IdempotencyKeyReused);
        }
        let attempt = match attempt.status {
            AttemptStatus::Pending => self.reconcile_attempt(&attempt.id).await?,
            _ => attempt,
        };
        Ok(Some(TopUp {
            attempt,
            replayed: true,
        }))
    }

    /// Phase 1: checks and records the attempt in the caller's transaction. The caller
    /// commits (also on a refusal, which may have set a block).
    pub(crate) async fn admit_in_tx(
        &self,
        conn: &mut sqlx::AnyConnection,
        admission: &Admission<'_>,
    ) -> Result<Admitted, PaymentError> {
        let now_ms = self.now_ms();
        let payer = lock_payer(conn, admission.account).await?;
        let settings = settings::load(conn).await?;
        if admission.amount < settings.topup_amount_min
            || admission.amount > settings.topup_amount_max
        {
            return Err(PaymentError::AmountOutOfRange {
                field: "amount",
                min: settings.topup_amount_min.to_decimal_string(2),
                max: settings.topup_amount_max.to_decimal_string(2),
            });
        }
        let card = methods::chargeable(conn, payer.id, admission.payment_method_id).await?;
        let tree = tree_of(&payer);
        let subjects = Subjects::new(&card.fingerprint, payer.id, tree);
        let guarded = carding::lock(conn, subjects, now_ms).await?;
        let candidate = Candidate {
            account: payer.id,
            fingerprint: &card.fingerprint,
            payment_method_id: &card.method.id,
        };
        if let Some(refusal) =
            carding::check_top_up(conn, &guarded, candidate, &settings, now_ms).await?
        {
            return Ok(Admitted::Refused(refusal));
        }
        let attempt_id = uuid::Uuid::now_v7().to_string();
        let new = NewAttempt {
            id: &attempt_id,
            account: payer.id,
            tree,
            payment_method_id: &card.method.id,
            fingerprint: &card.fingerprint,
            amount: admission.amount,
            auto_recharge: admission.auto_recharge,
            idempotency_key: admission.idempotency_key,
            request_sha256: admission.request_sha256,
            gateway: self.gateway.name(),
            actor: admission.actor,
        };
        if !attempts::insert(conn, &new, now_ms).await? {
            return Ok(Admitted::KeyTaken);
        }
        Ok(Admitted::Charge {
            attempt_id,
            token: card.token,
            amount: admission.amount,
        })
    }

    /// Phases 2 and 3: charges the recorded attempt and settles it if the gateway answered.
    pub(crate) async fn charge(
        &self,
        attempt_id: &str,
        token: String,
        amount: Money,
    ) -> Result<Attempt, PaymentError> {
        let request = ChargeRequest {
            idempotency_key: attempt_id.to_owned(),
            token,
            amount,
        };
        match self.call(self.gateway.charge(request)).await {
            Ok(outcome) => self.settle(attempt_id, outcome).await?,
            Err(error) => {
                tracing::warn!(payment.id = %attempt_id, error = %error, "Payment {attempt_id} has no answer from the gateway; it stays pending until reconciled: {error}");
            }
        }
        self.attempt(attempt_id).await
    }

    async fn attempt(&self, id: &str) -> Result<Attempt, PaymentError> {
        let mut conn = self.db.read.acquire().await?;
        attempts::find(&mut conn, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("payment attempt {id} is missing").into())
    }

    /// Phase 3: settles a pending attempt with the gateway's outcome, exactly once.
    pub(crate) async fn settle(
        &self,
        id: &str,
        outcome: ChargeOutcome,
    ) -> Result<(), PaymentError> {
        let now_ms = self.now_ms();
        let mut tx = self.db.begin_write().await?;
        // Lock the attempt first: a settling transaction takes the attempt, then either the
        // carding guards (a decline) or balances (a success), never both.
        sqlx::query("UPDATE payment_attempts SET status = status WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let attempt = attempts::find(&mut tx, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("payment attempt {id} is missing"))?;
        if attempt.status != AttemptStatus::Pending {
            return Ok(());
        }
        match outcome {
            ChargeOutcome::Succeeded { charge_id } => {
                if attempts::settle(
                    &mut tx,
                    id,
                    AttemptStatus::Succeeded,
                    Some(&charge_id),
                    None,
                    now_ms,
                )
                .await?
                {
                    self.post_payment(&mut tx, &attempt, now_ms).await?;
                }
            }
            ChargeOutcome::Declined { code } => {
                // Only a decline takes the carding guards (a success takes balances), so
                // no transaction that holds guards ever waits on a balance.
                let settings = settings::load(&mut tx).await?;
                let subjects =
                    Subjects::new(&attempt.fingerprint, attempt.account_id, attempt.tree_id);
                let guarded = carding::lock(&mut tx, subjects, now_ms).await?;
                let code = Some(code.as_str());
                if attempts::settle(&mut tx, id, AttemptStatus::Declined, None, code, now_ms)
                    .await?
                {
                    carding::after_decline(
                        &mut tx,
                        &guarded,
                        attempt.account_id,
                        attempt.tree_id,
                        &settings,
                        now_ms,
                    )
                    .await?;
                }
            }
            ChargeOutcome::Failed => {
                attempts::settle(&mut tx, id, AttemptStatus::Failed, None, None, now_ms).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Posts a successful attempt's one journal entry and records it on the account's trail.
    async fn post_payment(
        &self,
        conn: &mut sqlx::AnyConnection,
        attempt: &Attempt,
        now_ms: i64,
    ) -> Result<(), PaymentError> {
        let entry_id = uuid::Uuid::now_v7().to_string();
        let header = EntryHeader {
            id: entry_id.clone(),
            kind: EntryKind::CardPayment,
            account: Some(attempt.account_id),
            reason: Some(format!(
                "card payment {} ({} •••• {})",
                attempt.id, attempt.card_brand, attempt.card_last4
            )),
            created_by: attempt.actor.label(),
        };
        let book = Book::Balance(attempt.account_id);
        let entry = Entry::transfer(header, Book::PlatformCardPayments, book, attempt.amount)
            .map_err(|e| anyhow::anyhow!("card payment entry: {e}"))?;
        ledger::repo::post_in_tx(conn, &entry, now_ms).await?;
        sqlx::query("UPDATE payment_attempts SET entry_id = $1 WHERE id = $2")
            .bind(&entry_id)
            .bind(&attempt.id)
            .execute(&mut *conn)
            .await?;
        let after = ledger::repo::book_balance(conn, book).await?;
        let before = after.checked_sub(attempt.amount).unwrap_or(after);
        let event = audit::Event {
            account: Some(attempt.account_id),
            change_type: "stored_payment_transaction.create",
            resource_id: attempt.id.clone(),
            changes: vec![
                Change::new(
                    "balance",
                    before.to_decimal_string(2),
                    after.to_decimal_string(2),
                ),
                Change::new(
                    "amount",
                    serde_json::Value::Null,
                    attempt.amount.to_decimal_string(2),
                ),
                Change::new(
                    "payment_method_id",
                    serde_json::Value::Null,
                    attempt.payment_method_id.as_str(),
                ),
                Change::new(
                    "auto_recharge",
                    serde_json::Value::Null,
                    attempt.auto_recharge,
                ),
            ],
        };
        audit::record(conn, &attempt.actor, &event, now_ms).await?;
        tracing::info!(payment.id = %attempt.id, account.id = %attempt.account_id, "Card payment {} credited", attempt.id);
        Ok(())
    }

    /// Asks the gateway about one pending attempt and settles it if the outcome is known. A
    /// gateway with no record of it after the grace period never charged it: failed.
    pub(crate) async fn reconcile_attempt(&self, id: &str) -> Result<Attempt, PaymentError> {
        let attempt = self.attempt(id).await?;
        if attempt.status != AttemptStatus::Pending {
            return Ok(attempt);
        }
        match self.call(self.gateway.lookup(id)).await {
            Ok(Some(outcome)) => self.settle(id, outcome).await?,
            Ok(None) => {
                let age_ms = self.now_ms().saturating_sub(attempt.created_at_ms);
                if age_ms > self.config.pending_grace_ms() {
                    self.settle(id, ChargeOutcome::Failed).await?;
                }
            }
            Err(error) => {
                tracing::warn!(payment.id = %id, error = %error, "Payment {id} could not be reconciled yet: {error}");
            }
        }
        self.attempt(id).await
    }

    /// Settles what it can of the pending attempts and refunds (oldest first, one batch).
    #[tracing::instrument(name = "steward.payments.reconcile_once", skip_all)]
    pub async fn reconcile_once(&self) -> Result<ReconcileReport, PaymentError> {
        let pending = {
            let mut conn = self.db.read.acquire().await?;
            attempts::pending_ids(&mut conn, RECONCILE_BATCH_MAX).await?
        };
        let mut report = ReconcileReport::default();
        for id in pending {
            match self.reconcile_attempt(&id).await?.status {
                AttemptStatus::Pending => report.still_pending += 1,
                _ => report.settled += 1,
            }
        }
        report.refunds_settled = self.reconcile_refunds(RECONCILE_BATCH_MAX).await?;
        Ok(report)
    }

    /// One page of an account's attempts, newest first.
    pub async fn list_top_ups(
        &self,
        account: &Account,
        page: PageRequest,
    ) -> Result<Page<Attempt>, PaymentError> {
        super::ensure_payable(account).or_else(|e| match e {
            PaymentError::Cancelled => Ok(()),
            other => Err(other),
        })?;
        let mut conn = self.db.read.acquire().await?;
        let (items, total) =
            attempts::list(&mut conn, account.id, page.size(), page.offset()).await?;
        Ok(Page {
            items,
            request: page,
            total_results: crate::db::non_negative(total),
        })
    }
}
