//! Carding defences: velocity rules per card fingerprint, per account and per manager tree,
//! and the temporary blocks a tripped rule sets.
//!
//! Every decision takes the row locks of its subjects in `payment_guards` first (in one
//! fixed order), so that the rules hold across any number of servers: the database is the
//! arbiter. Attempts still pending count as if they would succeed (top-up rules) or be
//! declined (decline rules), so that concurrent attempts cannot slip past a threshold. A rule
//! trips on the attempt that would exceed it (success rules) or on the decline that reaches
//! it (decline rules); the tripping attempt and every later one until the block expires or
//! the operator lifts it are refused before the gateway is called.

mod blocks;

pub use blocks::{Block, lift_block, list_blocks};

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};

use super::settings::{PaymentSettings, Rule};
use crate::accounts::AccountId;
use crate::audit;
use crate::clock::{from_epoch_ms, to_wire};

/// The advice every refusal gives.
const ADVICE: &str = "Top up less often with larger amounts, or use rollup billing so that the \
                      manager pays for its customers' usage with one card.";

/// The attempt refused when pending attempts could take a decline rule past its threshold
/// waits about this long for them to settle.
const IN_FLIGHT_RETRY_MS: i64 = 30_000;

/// A refusal by a carding rule: the 429 the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What happened and what to do, in words.
    pub detail: String,
    /// When to try again.
    pub retry_after_ms: i64,
}

/// The subjects of one decision: the card, the account and its manager tree.
#[derive(Debug, Clone)]
pub struct Subjects {
    /// `card:<fingerprint>`.
    pub card: String,
    /// `account:<id>`.
    pub account: String,
    /// `tree:<manager id>` (the account itself when it has no manager).
    pub tree: String,
}

impl Subjects {
    /// The subjects of `account` (in tree `tree`) paying with the card `fingerprint`.
    pub fn new(fingerprint: &str, account: AccountId, tree: AccountId) -> Self {
        Self {
            card: format!("card:{fingerprint}"),
            account: format!("account:{account}"),
            tree: format!("tree:{tree}"),
        }
    }

    fn all(&self) -> [&str; 3] {
        [&self.account, &self.card, &self.tree]
    }
}

/// The locked subjects and where each one's counts start.
#[derive(Debug)]
pub struct Guarded {
    subjects: Subjects,
    counted_from_ms: BTreeMap<String, i64>,
}

impl Guarded {
    fn since(&self, subject: &str, rule: Rule, now_ms: i64) -> i64 {
        let lifted = self.counted_from_ms.get(subject).copied().unwrap_or(0);
        now_ms.saturating_sub(rule.window_ms).max(lifted)
    }
}

/// Takes the row locks of the subjects (sorted, the same order everywhere) and reads where
/// their counts start.
pub async fn lock(
    conn: &mut AnyConnection,
    subjects: Subjects,
    now_ms: i64,
) -> Result<Guarded, sqlx::Error> {
    let mut sorted = subjects.all().map(str::to_owned);
    sorted.sort();
    let mut counted_from_ms = BTreeMap::new();
    for subject in sorted {
        let from: i64 = sqlx::query_scalar(
            "INSERT INTO payment_guards (subject, counted_from_ms, updated_at_ms) VALUES ($1, 0, $2) \
             ON CONFLICT (subject) DO UPDATE SET updated_at_ms = excluded.updated_at_ms \
             RETURNING counted_from_ms",
        )
        .bind(&subject)
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await?;
        counted_from_ms.insert(subject, from);
    }
    Ok(Guarded {
        subjects,
        counted_from_ms,
    })
}

/// The rules a block can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockRule {
    CardTopups,
    CardAccounts,
    AccountCards,
    AccountDeclines,
    TreeDeclines,
}

impl BlockRule {
    fn as_str(self) -> &'static str {
        match self {
            Self::CardTopups => "card_topups",
            Self::CardAccounts => "card_accounts",
            Self::AccountCards => "account_cards",
            Self::AccountDeclines => "account_declines",
            Self::TreeDeclines => "tree_declines",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::CardTopups,
            Self::CardAccounts,
            Self::AccountCards,
            Self::AccountDeclines,
            Self::TreeDeclines,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }

    fn rule(self, settings: &PaymentSettings) -> Rule {
        match self {
            Self::CardTopups => settings.card_topups,
            Self::CardAccounts => settings.card_accounts,
            Self::AccountCards => settings.account_cards,
            Self::AccountDeclines => settings.account_declines,
            Self::TreeDeclines => settings.tree_declines,
        }
    }

    /// Why the block was set, as the customer reads it.
    fn reason(self, settings: &PaymentSettings) -> String {
        let rule = self.rule(settings);
        let window = describe_window(rule.window_ms);
        match self {
            Self::CardTopups => format!(
                "this card reached its limit of {} top-ups in {window}, a pattern card-testing fraud shows, so payments with it are paused",
                rule.max
            ),
            Self::CardAccounts => format!(
                "this card has topped up {} different accounts in {window}, a pattern card-testing fraud shows, so payments with it are paused",
                rule.max
            ),
            Self::AccountCards => format!(
                "this account added {} different cards in {window}, a pattern card-testing fraud shows, so adding cards and top-ups are paused",
                rule.max
            ),
            Self::AccountDeclines => format!(
                "this account had {} declined payments in {window}, so its payments are paused; check the card with its bank",
                rule.max
            ),
            Self::TreeDeclines => format!(
                "the accounts of this manager had {} declined payments in {window}, so their payments are paused",
                rule.max
            ),
        }
    }
}

/// `24 hours`, `1 hour`, `90 minutes`.
fn describe_window(ms: i64) -> String {
    let minutes = ms / 60_000;
    match (minutes % 60, minutes / 60) {
        (0, 1) => "1 hour".to_owned(),
        (0, hours) => format!("{hours} hours"),
        _ => format!("{minutes} minutes"),
    }
}

fn refusal(
    rule: BlockRule,
    settings: &PaymentSettings,
    expires_at_ms: i64,
    now_ms: i64,
) -> Refusal {
    let reason = rule.reason(settings);
    let until = to_wire(from_epoch_ms(expires_at_ms));
    Refusal {
        detail: format!(
            "Payment refused: {reason} until {until} (see Retry-After). {ADVICE} The platform operator can lift the block sooner."
        ),
        retry_after_ms: expires_at_ms.saturating_sub(now_ms).max(1),
    }
}

/// A refusal if any subject is blocked now.
pub async fn active_block(
    conn: &mut AnyConnection,
    guarded: &Guarded,
    settings: &PaymentSettings,
    now_ms: i64,
) -> Result<Option<Refusal>, sqlx::Error> {
    let [a, b, c] = guarded.subjects.all();
    let row = sqlx::query(
        "SELECT rule, expires_at_ms FROM payment_blocks WHERE subject IN ($1, $2, $3) \
         AND lifted_at_ms IS NULL AND expires_at_ms > $4 ORDER BY expires_at_ms DESC LIMIT 1",
    )
    .bind(a)
    .bind(b)
    .bind(c)
    .bind(now_ms)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        let rule: String = row.try_get("rule")?;
        let expires_at_ms: i64 = row.try_get("expires_at_ms")?;
        let rule = BlockRule::parse(&rule).unwrap_or(BlockRule::CardTopups);
        Ok(refusal(rule, settings, expires_at_ms, now_ms))
    })
    .transpose()
}

/// Who tripped a block: recorded on the block and on that account's audit trail.
#[derive(Debug, Clone, Copy)]
pub struct Tripper<'a> {
    /// The account whose trail records the block.
    pub account: AccountId,
    /// The card involved, if any.
    pub payment_method_id: Option<&'a str>,
}

async fn trip(
    conn: &mut AnyConnection,
    rule: BlockRule,
    subject: &str,
    tripper: Tripper<'_>,
    settings: &PaymentSettings,
    now_ms: i64,
) -> Result<Refusal, sqlx::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    let expires_at_ms = now_ms.saturating_add(rule.rule(settings).window_ms);
    sqlx::query(
        "INSERT INTO payment_blocks (id, subject, rule, account_id, payment_method_id, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(subject)
    .bind(rule.as_str())
    .bind(tripper.account.to_string())
    .bind(tripper.payment_method_id)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut *conn)
    .await?;
    let scope = subject.split(':').next().unwrap_or_default();
    let mut changes = vec![
        audit::Change::new("scope", serde_json::Value::Null, scope),
        audit::Change::new("rule", serde_json::Value::Null, rule.as_str()),
        audit::Change::new(
            "expires_at",
            serde_json::Value::Null,
            to_wire(from_epoch_ms(expires_at_ms)),
        ),
    ];
    if let Some(method) = tripper.payment_method_id {
        changes.push(audit::Change::new(
            "payment_method_id",
            serde_json::Value::Null,
            method,
        ));
    }
    let event = audit::Event {
        account: Some(tripper.account),
        change_type: "payment_block.create",
        resource_id: id.clone(),
        changes,
    };
    audit::record(conn, &audit::Actor::System("carding"), &event, now_ms).await?;
    tracing::warn!(block.id = %id, account.id = %tripper.account, rule = rule.as_str(), "Carding rule {} tripped: block {id} set", rule.as_str());
    Ok(refusal(rule, settings, expires_at_ms, now_ms))
}

/// An attempt about to be made.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The account topped up.
    pub account: AccountId,
    /// The card's fingerprint.
    pub fingerprint: &'a str,
    /// The card's payment method.
    pub payment_method_id: &'a str,
}

/// Checks every top-up rule for `candidate`; a tripped rule sets its block. The caller
/// commits either way (a block must persist) and refuses when this returns a refusal.
pub async fn check_top_up(
    conn: &mut AnyConnection,
    guarded: &Guarded,
    candidate: Candidate<'_>,
    settings: &PaymentSettings,
    now_ms: i64,
) -> Result<Option<Refusal>, sqlx::Error> {
    if let Some(refusal) = active_block(conn, guarded, settings, now_ms).await? {
        return Ok(Some(refusal));
    }
    let tripper = Tripper {
        account: candidate.account,
        payment_method_id: Some(candidate.payment_method_id),
    };
    let card = &guarded.subjects.card;
    if settings.card_topups.is_on() {
        let since = guarded.since(card, settings.card_topups, now_ms);
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM payment_attempts WHERE fingerprint = $1 \
             AND status IN ('pending', 'succeeded') AND created_at_ms > $2",
        )
        .bind(candidate.fingerprint)
        .bind(since)
        .fetch_one(&mut *conn)
        .await?;
        if count >= settings.card_topups.max {
            let refusal =
                trip(conn, BlockRule::CardTopups, card, tripper, settings, now_ms).await?;
            return Ok(Some(refusal));
        }
    }
    if settings.card_accounts.is_on() {
        let since = guarded.since(card, settings.card_accounts, now_ms);
        let accounts: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT account_id FROM payment_attempts WHERE fingerprint = $1 \
             AND status IN ('pending', 'succeeded') AND created_at_ms > $2",
        )
        .bind(candidate.fingerprint)
        .bind(since)
        .fetch_all(&mut *conn)
        .await?;
        let this = candidate.account.to_string();
        let count = i64::try_from(accounts.len()).unwrap_or(i64::MAX);
        if !accounts.contains(&this) && count >= settings.card_accounts.max {
            let refusal = trip(
                conn,
                BlockRule::CardAccounts,
                card,
                tripper,
                settings,
                now_ms,
            )
            .await?;
            return Ok(Some(refusal));
        }
    }
    let declines = [
        (
            BlockRule::AccountDeclines,
            &guarded.subjects.account,
            "account_id",
        ),
        (BlockRule::TreeDeclines, &guarded.subjects.tree, "tree_id"),
    ];
    for (block_rule, subject, column) in declines {
        let rule = block_rule.rule(settings);
        if !rule.is_on() {
            continue;
        }
        let id = subject.split_once(':').map_or("", |(_, id)| id);
        let since = guarded.since(subject, rule, now_ms);
        let sql = format!(
            "SELECT COALESCE(SUM(CASE WHEN status = 'declined' AND created_at_ms > $2 THEN 1 ELSE 0 END), 0) AS declined, \
             COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS pending \
             FROM payment_attempts WHERE {column} = $1 AND created_at_ms > $3"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(since)
            .bind(now_ms.saturating_sub(rule.window_ms.max(IN_FLIGHT_RETRY_MS)))
            .fetch_one(&mut *conn)
            .await?;
        let declined: i64 = row.try_get("declined")?;
        let pending: i64 = row.try_get("pending")?;
        if declined >= rule.max {
            // Reached without a block in force (a lowered threshold): block now.
            let subject = subject.clone();
            let refusal = trip(conn, block_rule, &subject, tripper, settings, now_ms).await?;
            return Ok(Some(refusal));
        }
        if declined.saturating_add(pending) >= rule.max {
            return Ok(Some(Refusal {
                detail: format!(
                    "Payment refused for now: other payments of this account or of its manager's accounts are still \
                     being processed, and too many declines in a row pause payments. Retry in a minute. {ADVICE}"
                ),
                retry_after_ms: IN_FLIGHT_RETRY_MS,
            }));
        }
    }
    Ok(None)
}

/// After a decline: sets the account's or tree's block when its declines reached the
/// threshold (and it is not already blocked). Runs in the settling transaction, under the
/// guards' locks.
pub async fn after_decline(
    conn: &mut AnyConnection,
    guarded: &Guarded,
    account: AccountId,
    tree: AccountId,
    settings: &PaymentSettings,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let checks = [
        (
            BlockRule::AccountDeclines,
            &guarded.subjects.account,
            "account_id",
            account,
        ),
        (
            BlockRule::TreeDeclines,
            &guarded.subjects.tree,
            "tree_id",
            tree,
        ),
    ];
    for (block_rule, subject, column, owner) in checks {
        let rule = block_rule.rule(settings);
        if !rule.is_on() {
            continue;
        }
        let id = subject.split_once(':').map_or("", |(_, id)| id);
        let since = guarded.since(subject, rule, now_ms);
        let sql = format!(
            "SELECT COUNT(*) FROM payment_attempts WHERE {column} = $1 AND status = 'declined' AND created_at_ms > $2"
        );
        let declined: i64 = sqlx::query_scalar(&sql)
            .bind(id)
            .bind(since)
            .fetch_one(&mut *conn)
            .await?;
        let blocked: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM payment_blocks WHERE subject = $1 AND lifted_at_ms IS NULL AND expires_at_ms > $2",
        )
        .bind(subject)
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await?;
        if declined >= rule.max && blocked == 0 {
            let tripper = Tripper {
                account: owner,
                payment_method_id: None,
            };
            trip(conn, block_rule, subject, tripper, settings, now_ms).await?;
        }
    }
    Ok(())
}

/// Checks the card-adding rule for `account` adding the card `fingerprint`; a tripped
/// rule blocks the account. The caller commits either way.
pub async fn check_card_added(
    conn: &mut AnyConnection,
    guarded: &Guarded,
    account: AccountId,
    fingerprint: &str,
    settings: &PaymentSettings,
    now_ms: i64,
) -> Result<Option<Refusal>, sqlx::Error> {
    if let Some(refusal) = active_block(conn, guarded, settings, now_ms).await? {
        return Ok(Some(refusal));
    }
    let rule = settings.account_cards;
    if !rule.is_on() {
        return Ok(None);
    }
    let since = guarded.since(&guarded.subjects.account, rule, now_ms);
    let cards: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT fingerprint FROM payment_methods WHERE account_id = $1 AND created_at_ms > $2",
    )
    .bind(account.to_string())
    .bind(since)
    .fetch_all(&mut *conn)
    .await?;
    let count = i64::try_from(cards.len()).unwrap_or(i64::MAX);
    if cards.iter().any(|c| c == fingerprint) || count < rule.max {
        return Ok(None);
    }
    let tripper = Tripper {
        account,
        payment_method_id: None,
    };
    let subject = guarded.subjects.account.clone();
    trip(
        conn,
        BlockRule::AccountCards,
        &subject,
        tripper,
        settings,
        now_ms,
    )
    .await
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_as_people_say_them() {
        assert_eq!(describe_window(86_400_000), "24 hours");
        assert_eq!(describe_window(3_600_000), "1 hour");
        assert_eq!(describe_window(5_400_000), "90 minutes");
    }
}
