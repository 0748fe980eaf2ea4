//! Payment methods: the cards an account saved, by gateway token. The first card becomes the
//! default (charged by top-ups that name none, and by auto-recharge); removing the default
//! leaves none until another is chosen, so nothing is charged to a card nobody picked.

use sqlx::{AnyConnection, Row};

use super::carding::{self, Subjects};
use super::{PaymentError, Payments, lock_payer, settings, tree_of};
use crate::accounts::{Account, AccountId};
use crate::audit::{self, Actor, Change};
use crate::db::is_unique_violation;

/// Live cards an account may hold: plenty for real use, few enough to stop card hoarding.
pub const METHODS_PER_ACCOUNT_MAX: usize = 10;

/// Longest token accepted (gateway tokens are short; anything longer is not one).
pub const TOKEN_LENGTH_MAX: usize = 255;

/// A saved card, as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMethod {
    /// Payment method id.
    pub id: String,
    /// The account it belongs to.
    pub account_id: String,
    /// Card brand.
    pub brand: String,
    /// Last four digits.
    pub last4: String,
    /// Expiry month.
    pub exp_month: i64,
    /// Expiry year.
    pub exp_year: i64,
    /// Whether top-ups and auto-recharge charge it by default.
    pub is_default: bool,
    /// When it was added.
    pub created_at_ms: i64,
    /// When it was removed, if it was.
    pub deleted_at_ms: Option<i64>,
}

/// A live card with what charging it needs (the token stays inside the crate).
#[derive(Debug, Clone)]
pub(crate) struct Chargeable {
    pub(crate) method: PaymentMethod,
    pub(crate) token: String,
    pub(crate) fingerprint: String,
}

const COLUMNS: &str = "id, account_id, brand, last4, exp_month, exp_year, is_default, \
    created_at_ms, deleted_at_ms, token, fingerprint";

fn chargeable_from_row(row: &sqlx::any::AnyRow) -> Result<Chargeable, sqlx::Error> {
    Ok(Chargeable {
        method: PaymentMethod {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            brand: row.try_get("brand")?,
            last4: row.try_get("last4")?,
            exp_month: row.try_get("exp_month")?,
            exp_year: row.try_get("exp_year")?,
            is_default: row.try_get::<i64, _>("is_default")? != 0,
            created_at_ms: row.try_get("created_at_ms")?,
            deleted_at_ms: row.try_get("deleted_at_ms")?,
        },
        token: row.try_get("token")?,
        fingerprint: row.try_get("fingerprint")?,
    })
}

/// A live card of `account`: the one named, or its default.
pub(crate) async fn chargeable(
    conn: &mut AnyConnection,
    account: AccountId,
    id: Option<&str>,
) -> Result<Chargeable, PaymentError> {
    let sql = match id {
        Some(_) => format!(
            "SELECT {COLUMNS} FROM payment_methods WHERE account_id = $1 AND deleted_at_ms IS NULL AND id = $2"
        ),
        None => format!(
            "SELECT {COLUMNS} FROM payment_methods WHERE account_id = $1 AND deleted_at_ms IS NULL AND is_default = 1"
        ),
    };
    let mut query = sqlx::query(&sql).bind(account.to_string());
    if let Some(id) = id {
        query = query.bind(id);
    }
    let row = query.fetch_optional(conn).await?;
    match (row, id) {
        (Some(row), _) => Ok(chargeable_from_row(&row)?),
        (None, Some(_)) => Err(PaymentError::MethodNotFound),
        (None, None) => Err(PaymentError::NoDefaultMethod),
    }
}

async fn live_methods(
    conn: &mut AnyConnection,
    account: AccountId,
) -> Result<Vec<PaymentMethod>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payment_methods WHERE account_id = $1 AND deleted_at_ms IS NULL \
         ORDER BY created_at_ms DESC, id DESC"
    );
    let rows = sqlx::query(&sql)
        .bind(account.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| chargeable_from_row(row).map(|c| c.method))
        .collect()
}

fn card_changes(method: &PaymentMethod) -> Vec<Change> {
    use serde_json::Value::Null;
    vec![
        Change::new("brand", Null, method.brand.as_str()),
        Change::new("last4", Null, method.last4.as_str()),
        Change::new(
            "expiry",
            Null,
            format!("{:02}/{}", method.exp_month, method.exp_year),
        ),
        Change::new("default", Null, method.is_default),
    ]
}

async fn record(
    conn: &mut AnyConnection,
    actor: &Actor,
    account: AccountId,
    change_type: &'static str,
    method_id: &str,
    changes: Vec<Change>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let event = audit::Event {
        account: Some(account),
        change_type,
        resource_id: method_id.to_owned(),
        changes,
    };
    audit::record(conn, actor, &event, now_ms).await
}

impl Payments {
    /// The live cards of `account`, newest first.
    pub async fn list_methods(
        &self,
        account: &Account,
    ) -> Result<Vec<PaymentMethod>, PaymentError> {
        super::ensure_payable(account).or_else(|e| match e {
            // A cancelled account's cards can still be read.
            PaymentError::Cancelled => Ok(()),
            other => Err(other),
        })?;
        let mut conn = self.db.read.acquire().await?;
        Ok(live_methods(&mut conn, account.id).await?)
    }

    /// Saves the card behind `token` on `account`. Carding: a card blocked anywhere, or an
    /// account adding too many distinct cards, is refused (429).
    #[tracing::instrument(name = "steward.payments.add_method", skip_all, fields(account.id = %account))]
    pub async fn add_method(
        &self,
        account: AccountId,
        token: &str,
        make_default: bool,
        actor: &Actor,
    ) -> Result<PaymentMethod, PaymentError> {
        let card = self.card_of(token).await?;
        let now_ms = self.now_ms();
        let mut tx = self.db.begin_write().await?;
        let payer = lock_payer(&mut tx, account).await?;
        let settings = settings::load(&mut tx).await?;
        let subjects = Subjects::new(&card.fingerprint, account, tree_of(&payer));
        let guarded = carding::lock(&mut tx, subjects, now_ms).await?;
        let refused = carding::check_card_added(
            &mut tx,
            &guarded,
            account,
            &card.fingerprint,
            &settings,
            now_ms,
        )
        .await?;
        if let Some(refusal) = refused {
            tx.commit().await?;
            return Err(PaymentError::Refused(refusal));
        }
        let gateway = self.gateway.name();
        check_not_saved(&mut tx, gateway, account, token, &card.fingerprint).await?;
        let live = live_methods(&mut tx, account).await?;
        if live.len() >= METHODS_PER_ACCOUNT_MAX {
            return Err(PaymentError::TooManyMethods {
                max: METHODS_PER_ACCOUNT_MAX,
            });
        }
        let is_default = make_default || !live.iter().any(|m| m.is_default);
        if is_default {
            clear_default(&mut tx, account).await?;
        }
        let method = PaymentMethod {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: account.to_string(),
            brand: card.brand.clone(),
            last4: card.last4.clone(),
            exp_month: i64::from(card.exp_month),
            exp_year: i64::from(card.exp_year),
            is_default,
            created_at_ms: now_ms,
            deleted_at_ms: None,
        };
        let saved = Saved {
            gateway,
            token,
            fingerprint: &card.fingerprint,
            created_by: actor.label(),
        };
        insert_method(&mut tx, &method, &saved).await?;
        let changes = card_changes(&method);
        let change_type = "payment_method.create";
        record(
            &mut tx,
            actor,
            account,
            change_type,
            &method.id,
            changes,
            now_ms,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(account.id = %account, payment_method.id = %method.id, "Saved payment method {}", method.id);
        Ok(method)
    }

    /// What the gateway knows of a token; an unknown token is not found.
    async fn card_of(&self, token: &str) -> Result<super::gateway::CardDetails, PaymentError> {
        if token.is_empty() || token.len() > TOKEN_LENGTH_MAX {
            return Err(PaymentError::TokenNotFound);
        }
        match self.call(self.gateway.card(token)).await {
            Ok(Some(card)) => Ok(card),
            Ok(None) => Err(PaymentError::TokenNotFound),
            Err(error) => {
                tracing::warn!(error = %error, "Card lookup failed: {error}");
                Err(PaymentError::GatewayUnavailable)
            }
        }
    }

    /// Removes a card: it can no longer be charged. A removed default leaves no default.
    #[tracing::instrument(name = "steward.payments.delete_method", skip_all, fields(account.id = %account))]
    pub async fn delete_method(
        &self,
        account: AccountId,
        id: &str,
        actor: &Actor,
    ) -> Result<PaymentMethod, PaymentError> {
        let now_ms = self.now_ms();
        let mut tx = self.db.begin_write().await?;
        lock_payer(&mut tx, account).await?;
        let mut method = chargeable(&mut tx, account, Some(id)).await?.method;
        sqlx::query("UPDATE payment_methods SET deleted_at_ms = $1, is_default = 0 WHERE id = $2")
            .bind(now_ms)
            .bind(&method.id)
            .execute(&mut *tx)
            .await?;
        let changes = vec![Change::new("deleted", false, true)];
        record(
            &mut tx,
            actor,
            account,
            "payment_method.delete",
            &method.id,
            changes,
            now_ms,
        )
        .await?;
        tx.commit().await?;
        method.is_default = false;
        method.deleted_at_ms = Some(now_ms);
        Ok(method)
    }

    /// Makes a card the default. Asking for the default it already is changes nothing.
    #[tracing::instrument(name = "steward.payments.set_default_method", skip_all, fields(account.id = %account))]
    pub async fn set_default_method(
        &self,
        account: AccountId,
        id: &str,
        actor: &Actor,
    ) -> Result<PaymentMethod, PaymentError> {
        let now_ms = self.now_ms();
        let mut tx = self.db.begin_write().await?;
        lock_payer(&mut tx, account).await?;
        let mut method = chargeable(&mut tx, account, Some(id)).await?.method;
        if !method.is_default {
            let previous: Option<String> = sqlx::query_scalar(
                "SELECT id FROM payment_methods WHERE account_id = $1 AND is_default = 1 AND deleted_at_ms IS NULL",
            )
            .bind(account.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            clear_default(&mut tx, account).await?;
            sqlx::query("UPDATE payment_methods SET is_default = 1 WHERE id = $1")
                .bind(&method.id)
                .execute(&mut *tx)
                .await?;
            let changes = vec![Change::new(
                "default_payment_method_id",
                previous.map_or(serde_json::Value::Null, serde_json::Value::from),
                method.id.as_str(),
            )];
            record(
                &mut tx,
                actor,
                account,
                "payment_method.default",
                &method.id,
                changes,
                now_ms,
            )
            .await?;
            method.is_default = true;
        }
        tx.commit().await?;
        Ok(method)
    }
}

/// Refuses a token another account saved (not found, like an unknown one), a card the
/// account already holds, and a token of this account's own that was saved before.
async fn check_not_saved(
    conn: &mut AnyConnection,
    gateway: &str,
    account: AccountId,
    token: &str,
    fingerprint: &str,
) -> Result<(), PaymentError> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT account_id FROM payment_methods WHERE gateway = $1 AND token = $2",
    )
    .bind(gateway)
    .bind(token)
    .fetch_optional(&mut *conn)
    .await?;
    if owner
        .as_ref()
        .is_some_and(|owner| *owner != account.to_string())
    {
        return Err(PaymentError::TokenNotFound);
    }
    let same_card: Option<String> = sqlx::query_scalar(
        "SELECT id FROM payment_methods WHERE account_id = $1 AND fingerprint = $2 AND deleted_at_ms IS NULL",
    )
    .bind(account.to_string())
    .bind(fingerprint)
    .fetch_optional(&mut *conn)
    .await?;
    if same_card.is_some() {
        return Err(PaymentError::DuplicateCard);
    }
    if owner.is_some() {
        return Err(PaymentError::Invalid {
            field: "token",
            message:
                "this token was already used to save a card; enter the card again for a new token"
                    .to_owned(),
        });
    }
    Ok(())
}

/// What is stored with a card besides what is shown.
struct Saved<'a> {
    gateway: &'a str,
    token: &'a str,
    fingerprint: &'a str,
    created_by: String,
}

async fn insert_method(
    conn: &mut AnyConnection,
    method: &PaymentMethod,
    saved: &Saved<'_>,
) -> Result<(), PaymentError> {
    sqlx::query(
        "INSERT INTO payment_methods (id, account_id, gateway, token, brand, last4, exp_month, exp_year, \
         fingerprint, is_default, created_by, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&method.id)
    .bind(&method.account_id)
    .bind(saved.gateway)
    .bind(saved.token)
    .bind(&method.brand)
    .bind(&method.last4)
    .bind(method.exp_month)
    .bind(method.exp_year)
    .bind(saved.fingerprint)
    .bind(i64::from(method.is_default))
    .bind(&saved.created_by)
    .bind(method.created_at_ms)
    .execute(conn)
    .await
    .map_err(|e| {
        // Lost races with a concurrent save of the same token or card.
        if is_unique_violation(&e, "token") {
            PaymentError::TokenNotFound
        } else if is_unique_violation(&e, "fingerprint") || is_unique_violation(&e, "live_card") {
            PaymentError::DuplicateCard
        } else {
            PaymentError::Database(e)
        }
    })?;
    Ok(())
}

async fn clear_default(conn: &mut AnyConnection, account: AccountId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payment_methods SET is_default = 0 WHERE account_id = $1 AND is_default = 1",
    )
    .bind(account.to_string())
    .execute(conn)
    .await?;
    Ok(())
}
