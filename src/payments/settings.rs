//! Operator settings of payments: top-up bounds, carding thresholds and windows,
//! auto-recharge retries. They live in the database (`payment_settings`), so that every
//! server applies the same limits; a setting without a row has its built-in default. They
//! are read in the transaction that decides, so a change applies to the next attempt.

use sqlx::{AnyConnection, Row};

use crate::audit;
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;
use crate::money::{AMOUNT_ABS_MAX_NANOS, Money, NANOS_PER_UNIT};

/// What a setting's value measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Money, entered and shown as dollars and cents, stored in nano-units.
    Amount,
    /// A count; 0 turns a carding rule off.
    Count,
    /// A duration in seconds.
    Seconds,
}

/// One setting: its name, unit, default and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The stored and typed name.
    pub name: &'static str,
    /// What the value measures.
    pub unit: Unit,
    /// The built-in default (nano-units, a count, or seconds).
    pub default: i64,
    /// What it does.
    pub description: &'static str,
}

const DAY_S: i64 = 24 * 3600;
const HOUR_S: i64 = 3600;

/// Every setting, with its default. The carding defaults make "top up five managed accounts
/// with one card the same day" trip at the fourth account.
pub const SETTINGS: [Setting; 14] = [
    Setting {
        name: "topup_amount_min",
        unit: Unit::Amount,
        default: 10 * NANOS_PER_UNIT,
        description: "smallest top-up (and auto-recharge amount)",
    },
    Setting {
        name: "topup_amount_max",
        unit: Unit::Amount,
        default: 10_000 * NANOS_PER_UNIT,
        description: "largest top-up; an auto-recharge is capped at it",
    },
    Setting {
        name: "card_topups_max",
        unit: Unit::Count,
        default: 10,
        description: "successful top-ups per card (fingerprint, all accounts) per window",
    },
    Setting {
        name: "card_topups_window_s",
        unit: Unit::Seconds,
        default: DAY_S,
        description: "window and block time of card_topups_max",
    },
    Setting {
        name: "card_accounts_max",
        unit: Unit::Count,
        default: 3,
        description: "distinct accounts one card tops up per window",
    },
    Setting {
        name: "card_accounts_window_s",
        unit: Unit::Seconds,
        default: DAY_S,
        description: "window and block time of card_accounts_max",
    },
    Setting {
        name: "account_cards_max",
        unit: Unit::Count,
        default: 3,
        description: "distinct cards an account adds per window",
    },
    Setting {
        name: "account_cards_window_s",
        unit: Unit::Seconds,
        default: DAY_S,
        description: "window and block time of account_cards_max",
    },
    Setting {
        name: "account_declines_max",
        unit: Unit::Count,
        default: 3,
        description: "declined top-ups of an account per window; reaching it blocks the account",
    },
    Setting {
        name: "account_declines_window_s",
        unit: Unit::Seconds,
        default: HOUR_S,
        description: "window and block time of account_declines_max",
    },
    Setting {
        name: "tree_declines_max",
        unit: Unit::Count,
        default: 10,
        description: "declined top-ups across a manager and its managed accounts per window; reaching it blocks the tree",
    },
    Setting {
        name: "tree_declines_window_s",
        unit: Unit::Seconds,
        default: HOUR_S,
        description: "window and block time of tree_declines_max",
    },
    Setting {
        name: "auto_recharge_failures_max",
        unit: Unit::Count,
        default: 3,
        description: "failed auto-recharges in a row before the preference is disabled",
    },
    Setting {
        name: "auto_recharge_backoff_s",
        unit: Unit::Seconds,
        default: 15 * 60,
        description: "wait after the first failed auto-recharge; doubles after each further failure",
    },
];

/// Largest count a setting takes: far beyond any sensible threshold.
const COUNT_MAX: i64 = 1_000_000;

/// Shortest window or wait a setting takes: a minute.
const SECONDS_MIN: i64 = 60;

/// Longest window or wait a setting takes: 30 days.
const SECONDS_MAX: i64 = 30 * DAY_S;

/// A carding rule: at most `max` per `window_ms` (0 turns it off); a tripped rule blocks
/// for one window, after which everything it counted has left the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The threshold.
    pub max: i64,
    /// The window and block time.
    pub window_ms: i64,
}

impl Rule {
    /// Whether the rule is on.
    pub fn is_on(self) -> bool {
        self.max > 0
    }
}

/// The settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentSettings {
    /// Smallest top-up.
    pub topup_amount_min: Money,
    /// Largest top-up.
    pub topup_amount_max: Money,
    /// Successful top-ups per card.
    pub card_topups: Rule,
    /// Distinct accounts per card.
    pub card_accounts: Rule,
    /// Distinct cards added per account.
    pub account_cards: Rule,
    /// Declines per account.
    pub account_declines: Rule,
    /// Declines per manager tree.
    pub tree_declines: Rule,
    /// Failed auto-recharges before the preference is disabled.
    pub auto_recharge_failures_max: i64,
    /// First wait after a failed auto-recharge.
    pub auto_recharge_backoff_ms: i64,
}

impl PaymentSettings {
    fn from_values(value: impl Fn(&str) -> i64) -> Self {
        let rule = |name: &str| Rule {
            max: value(&format!("{name}_max")),
            window_ms: value(&format!("{name}_window_s")).saturating_mul(1000),
        };
        Self {
            topup_amount_min: Money::from_nanos(value("topup_amount_min")),
            topup_amount_max: Money::from_nanos(value("topup_amount_max")),
            card_topups: rule("card_topups"),
            card_accounts: rule("card_accounts"),
            account_cards: rule("account_cards"),
            account_declines: rule("account_declines"),
            tree_declines: rule("tree_declines"),
            auto_recharge_failures_max: value("auto_recharge_failures_max"),
            auto_recharge_backoff_ms: value("auto_recharge_backoff_s").saturating_mul(1000),
        }
    }

    /// The built-in defaults.
    pub fn defaults() -> Self {
        Self::from_values(|name| setting(name).map_or(0, |s| s.default))
    }
}

fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The stored values, by name (only those set).
async fn stored(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT name, value FROM payment_settings")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("name")?, row.try_get("value")?)))
        .collect()
}

/// The settings in force, read on `conn` (inside the deciding transaction).
pub async fn load(conn: &mut AnyConnection) -> Result<PaymentSettings, sqlx::Error> {
    let stored = stored(conn).await?;
    Ok(PaymentSettings::from_values(|name| {
        stored
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .or_else(|| setting(name).map(|s| s.default))
            .unwrap_or(0)
    }))
}

/// One setting as listed: value (as typed) and whether it is the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The setting.
    pub name: &'static str,
    /// Its value as the operator types it (`10.00`, `3`, `86400`).
    pub value: String,
    /// Its default, likewise.
    pub default: String,
    /// What it does.
    pub description: &'static str,
}

fn show(unit: Unit, value: i64) -> String {
    match unit {
        Unit::Amount => Money::from_nanos(value).to_decimal_string(2),
        Unit::Count | Unit::Seconds => value.to_string(),
    }
}

/// Every setting with its value in force.
pub async fn list(db: &Db) -> Result<Vec<Listed>, sqlx::Error> {
    let mut conn = db.read.acquire().await?;
    let stored = stored(&mut conn).await?;
    Ok(SETTINGS
        .iter()
        .map(|s| {
            let value = stored
                .iter()
                .find(|(n, _)| n == s.name)
                .map_or(s.default, |(_, v)| *v);
            Listed {
                name: s.name,
                value: show(s.unit, value),
                default: show(s.unit, s.default),
                description: s.description,
            }
        })
        .collect())
}

/// Why a setting was not changed.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// No such setting.
    #[error("unknown setting '{0}'; `steward admin payment-settings` lists them")]
    Unknown(String),
    /// The value does not fit the setting; the text says why.
    #[error("{0}")]
    Invalid(String),
    /// A query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

fn parse_value(setting: &Setting, text: &str) -> Result<i64, SettingError> {
    let invalid = |why: &str| SettingError::Invalid(format!("{}: {why}", setting.name));
    match setting.unit {
        Unit::Amount => {
            let amount =
                Money::parse_decimal(text).map_err(|_| invalid("give an amount such as 10.00"))?;
            if amount.nanos() <= 0 || amount.nanos() > AMOUNT_ABS_MAX_NANOS {
                return Err(invalid("the amount must be above 0 and at most 100000000"));
            }
            Ok(amount.nanos())
        }
        Unit::Count => text
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=COUNT_MAX).contains(n))
            .ok_or_else(|| invalid(&format!("give a whole number from 0 (off) to {COUNT_MAX}"))),
        Unit::Seconds => text
            .parse::<i64>()
            .ok()
            .filter(|n| (SECONDS_MIN..=SECONDS_MAX).contains(n))
            .ok_or_else(|| {
                invalid(&format!(
                    "give a number of seconds from {SECONDS_MIN} to {SECONDS_MAX}"
                ))
            }),
    }
}

/// Sets one setting (audited as a platform event) and returns the settings now in force.
pub async fn set(
    db: &Db,
    clock: &ClockHandle,
    name: &str,
    text: &str,
    actor: &audit::Actor,
) -> Result<PaymentSettings, SettingError> {
    let setting = setting(name).ok_or_else(|| SettingError::Unknown(name.to_owned()))?;
    let value = parse_value(setting, text.trim())?;
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    // A write first, so that on PostgreSQL the setting's row is locked before it is read
    // (on SQLite the transaction holds the database's write lock from its start).
    sqlx::query("UPDATE payment_settings SET value = value WHERE name = $1")
        .bind(setting.name)
        .execute(&mut *tx)
        .await?;
    let before = load(&mut tx).await?;
    sqlx::query(
        "INSERT INTO payment_settings (name, value, updated_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(setting.name)
    .bind(value)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    let after = load(&mut tx).await?;
    if after.topup_amount_min > after.topup_amount_max {
        return Err(SettingError::Invalid(
            "topup_amount_min must not be above topup_amount_max".to_owned(),
        ));
    }
    let event = audit::Event {
        account: None,
        change_type: "payment_setting.update",
        resource_id: setting.name.to_owned(),
        changes: vec![audit::Change::new(
            setting.name,
            show(setting.unit, value_of(&before, setting)),
            show(setting.unit, value),
        )],
    };
    audit::record(&mut tx, actor, &event, now_ms).await?;
    tx.commit().await?;
    Ok(after)
}

/// The value of `setting` in `settings`, in its stored unit.
fn value_of(settings: &PaymentSettings, setting: &Setting) -> i64 {
    let window_s = |rule: Rule| rule.window_ms / 1000;
    match setting.name {
        "topup_amount_min" => settings.topup_amount_min.nanos(),
        "topup_amount_max" => settings.topup_amount_max.nanos(),
        "card_topups_max" => settings.card_topups.max,
        "card_topups_window_s" => window_s(settings.card_topups),
        "card_accounts_max" => settings.card_accounts.max,
        "card_accounts_window_s" => window_s(settings.card_accounts),
        "account_cards_max" => settings.account_cards.max,
        "account_cards_window_s" => window_s(settings.account_cards),
        "account_declines_max" => settings.account_declines.max,
        "account_declines_window_s" => window_s(settings.account_declines),
        "tree_declines_max" => settings.tree_declines.max,
        "tree_declines_window_s" => window_s(settings.tree_declines),
        "auto_recharge_failures_max" => settings.auto_recharge_failures_max,
        "auto_recharge_backoff_s" => settings.auto_recharge_backoff_ms / 1000,
        _ => setting.default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent_and_every_setting_round_trips() {
        let defaults = PaymentSettings::defaults();
        assert!(defaults.topup_amount_min < defaults.topup_amount_max);
        assert_eq!(
            defaults.card_accounts,
            Rule {
                max: 3,
                window_ms: 86_400_000
            }
        );
        for s in SETTINGS {
            assert_eq!(value_of(&defaults, &s), s.default, "{}", s.name);
            assert_eq!(
                parse_value(&s, &show(s.unit, s.default)).unwrap(),
                s.default
            );
        }
    }
}
