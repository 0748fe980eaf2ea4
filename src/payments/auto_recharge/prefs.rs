//! Auto-recharge preferences (Telnyx `AutoRechargePref`): read and changed by the account
//! or its manager, audited.

use sqlx::{AnyConnection, Row};

use crate::accounts::{Account, AccountId};
use crate::audit::{self, Actor, Change};
use crate::money::{AMOUNT_ABS_MAX_NANOS, Money};
use crate::payments::{PaymentError, Payments, lock_payer, settings};

/// The one preference offered: Telnyx's `credit_paypal` (a card or wallet on file), here
/// the account's default card. `ach` is not offered.
pub const PREFERENCE_CARD: &str = "credit_paypal";
/// An account's preference (Telnyx `AutoRechargePref`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoRechargePref {
    /// The account.
    pub account_id: AccountId,
    /// Whether it is on.
    pub enabled: bool,
    /// The balance at or below which it recharges.
    pub threshold: Money,
    /// What it adds on top of bringing the balance back to the threshold.
    pub recharge: Money,
    /// Always `credit_paypal` (the default card).
    pub preference: String,
    /// Stored and shown; Steward issues no invoice for recharges.
    pub invoice_enabled: bool,
}

/// Changes to a preference; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct PrefUpdate {
    /// Turn on or off.
    pub enabled: Option<bool>,
    /// New threshold (dollars and cents).
    pub threshold: Option<Money>,
    /// New recharge amount (dollars and cents).
    pub recharge: Option<Money>,
    /// New preference.
    pub preference: Option<String>,
    /// New invoice flag.
    pub invoice_enabled: Option<bool>,
}

pub(super) async fn find_pref(
    conn: &mut AnyConnection,
    account: AccountId,
) -> Result<AutoRechargePref, sqlx::Error> {
    let row = sqlx::query(
        "SELECT enabled, threshold_nanos, recharge_nanos, preference, invoice_enabled \
         FROM auto_recharge_prefs WHERE account_id = $1",
    )
    .bind(account.to_string())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(AutoRechargePref {
            account_id: account,
            enabled: false,
            threshold: Money::ZERO,
            recharge: Money::ZERO,
            preference: PREFERENCE_CARD.to_owned(),
            invoice_enabled: false,
        });
    };
    Ok(AutoRechargePref {
        account_id: account,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        threshold: Money::from_nanos(row.try_get("threshold_nanos")?),
        recharge: Money::from_nanos(row.try_get("recharge_nanos")?),
        preference: row.try_get("preference")?,
        invoice_enabled: row.try_get::<i64, _>("invoice_enabled")? != 0,
    })
}

impl Payments {
    /// The preference of `account` (defaults: off, zero amounts).
    pub async fn auto_recharge_pref(
        &self,
        account: &Account,
    ) -> Result<AutoRechargePref, PaymentError> {
        crate::payments::ensure_payable(account).or_else(|e| match e {
            PaymentError::Cancelled => Ok(()),
            other => Err(other),
        })?;
        let mut conn = self.db.read.acquire().await?;
        Ok(find_pref(&mut conn, account.id).await?)
    }

    /// Changes the preference of `account`. Turning it on needs a default card and a
    /// recharge amount within the top-up bounds.
    #[tracing::instrument(name = "steward.payments.update_auto_recharge", skip_all, fields(account.id = %account))]
    pub async fn update_auto_recharge_pref(
        &self,
        account: AccountId,
        update: PrefUpdate,
        actor: &Actor,
    ) -> Result<AutoRechargePref, PaymentError> {
        check_preference(update.preference.as_deref())?;
        let now_ms = self.now_ms();
        let mut tx = self.db.begin_write().await?;
        lock_payer(&mut tx, account).await?;
        let settings = settings::load(&mut tx).await?;
        let before = find_pref(&mut tx, account).await?;
        let after = AutoRechargePref {
            account_id: account,
            enabled: update.enabled.unwrap_or(before.enabled),
            threshold: update.threshold.unwrap_or(before.threshold),
            recharge: update.recharge.unwrap_or(before.recharge),
            preference: PREFERENCE_CARD.to_owned(),
            invoice_enabled: update.invoice_enabled.unwrap_or(before.invoice_enabled),
        };
        check_amounts(&after, update.recharge.is_some(), &settings)?;
        if after.enabled && !before.enabled {
            crate::payments::methods::chargeable(&mut tx, account, None).await?;
        }
        let changes = pref_changes(&before, &after);
        if !changes.is_empty() {
            store_pref(&mut tx, &after, now_ms).await?;
            let event = audit::Event {
                account: Some(account),
                change_type: "auto_recharge_pref.update",
                resource_id: account.to_string(),
                changes,
            };
            audit::record(&mut tx, actor, &event, now_ms).await?;
        }
        tx.commit().await?;
        Ok(after)
    }
}

/// Only the default card is offered.
fn check_preference(preference: Option<&str>) -> Result<(), PaymentError> {
    let Some(preference) = preference.filter(|p| *p != PREFERENCE_CARD) else {
        return Ok(());
    };
    let message = if preference == "ach" {
        "ACH is not offered: auto-recharge charges the account's default card (preference credit_paypal)"
    } else {
        "preference must be credit_paypal (the account's default card)"
    };
    Err(PaymentError::Invalid {
        field: "preference",
        message: message.to_owned(),
    })
}

/// A threshold within what one amount may be; a recharge amount (when set, or when the
/// preference is on) within the top-up bounds.
fn check_amounts(
    pref: &AutoRechargePref,
    recharge_given: bool,
    settings: &settings::PaymentSettings,
) -> Result<(), PaymentError> {
    if pref.threshold.nanos() > AMOUNT_ABS_MAX_NANOS {
        return Err(PaymentError::AmountOutOfRange {
            field: "threshold_amount",
            min: Money::ZERO.to_decimal_string(2),
            max: Money::from_nanos(AMOUNT_ABS_MAX_NANOS).to_decimal_string(2),
        });
    }
    let (min, max) = (settings.topup_amount_min, settings.topup_amount_max);
    if (recharge_given || pref.enabled) && (pref.recharge < min || pref.recharge > max) {
        return Err(PaymentError::AmountOutOfRange {
            field: "recharge_amount",
            min: min.to_decimal_string(2),
            max: max.to_decimal_string(2),
        });
    }
    Ok(())
}

async fn store_pref(
    conn: &mut AnyConnection,
    pref: &AutoRechargePref,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auto_recharge_prefs (account_id, enabled, threshold_nanos, recharge_nanos, preference, \
         invoice_enabled, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (account_id) DO UPDATE SET enabled = excluded.enabled, \
         threshold_nanos = excluded.threshold_nanos, recharge_nanos = excluded.recharge_nanos, \
         preference = excluded.preference, invoice_enabled = excluded.invoice_enabled, \
         updated_at_ms = excluded.updated_at_ms",
    )
    .bind(pref.account_id.to_string())
    .bind(i64::from(pref.enabled))
    .bind(pref.threshold.nanos())
    .bind(pref.recharge.nanos())
    .bind(&pref.preference)
    .bind(i64::from(pref.invoice_enabled))
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

fn pref_changes(before: &AutoRechargePref, after: &AutoRechargePref) -> Vec<Change> {
    let mut changes = Vec::new();
    if before.enabled != after.enabled {
        changes.push(Change::new("enabled", before.enabled, after.enabled));
    }
    for (field, from, to) in [
        ("threshold_amount", before.threshold, after.threshold),
        ("recharge_amount", before.recharge, after.recharge),
    ] {
        if from != to {
            changes.push(Change::new(
                field,
                from.to_decimal_string(2),
                to.to_decimal_string(2),
            ));
        }
    }
    if before.invoice_enabled != after.invoice_enabled {
        changes.push(Change::new(
            "invoice_enabled",
            before.invoice_enabled,
            after.invoice_enabled,
        ));
    }
    changes
}
