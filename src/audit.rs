//! The audit trail: who changed what, recorded in the same transaction as the change, so an
//! event exists exactly when its change does.
//!
//! Each event belongs to the trail of one account (`account`, Telnyx's `user_id`): the
//! account whose resource changed. An account reads its own trail, including what its
//! manager or the operator did to it; a manager also reads its managed accounts' trails,
//! never the other way round. Events of the platform itself (a platform-default price list)
//! belong to no account and only the operator sees them.
//!
//! Nothing secret goes into `changes`: no key, password or card data, and no price — an
//! assignment says "pricing changed", never which list or rate.

use serde::Serialize;
use serde_json::Value;
use sqlx::AnyConnection;

use crate::accounts::AccountId;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The platform operator; the label names the channel (`operator:cli`, `operator:<key id>`).
    Operator(String),
    /// An account acting on itself (its own key or portal session).
    Owner(AccountId),
    /// A manager acting on one of its managed accounts (by API, or signed in as it).
    Manager(AccountId),
    /// Steward itself (background work such as auto-recharge or carding blocks); the label
    /// names the task.
    System(&'static str),
}

impl Actor {
    /// Telnyx's `change_made_by`: the operator and Steward itself are the platform (`telnyx`).
    pub fn change_made_by(&self) -> &'static str {
        match self {
            Self::Operator(_) | Self::System(_) => "telnyx",
            Self::Owner(_) => "account_owner",
            Self::Manager(_) => "account_manager",
        }
    }

    /// The account that acted, if an account did.
    pub fn account(&self) -> Option<AccountId> {
        match self {
            Self::Owner(id) | Self::Manager(id) => Some(*id),
            Self::Operator(_) | Self::System(_) => None,
        }
    }

    /// A stable label for the stored `actor` column.
    pub fn label(&self) -> String {
        match self {
            Self::Operator(label) => label.clone(),
            Self::Owner(id) | Self::Manager(id) => format!("account:{id}"),
            Self::System(task) => format!("system:{task}"),
        }
    }
}

/// One changed field. Values are JSON scalars or objects (Telnyx's schema takes no list of
/// scalars); money is a decimal string.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Dotted field name.
    pub field: String,
    /// Value before (null when created).
    pub from: Value,
    /// Value after (null when removed).
    pub to: Value,
}

impl Change {
    /// A change of `field` from `from` to `to`.
    pub fn new(field: &str, from: impl Into<Value>, to: impl Into<Value>) -> Self {
        Self {
            field: field.to_owned(),
            from: from.into(),
            to: to.into(),
        }
    }
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct Event {
    /// Whose trail it is on (None: the platform's own, operator-only).
    pub account: Option<AccountId>,
    /// What kind of change (`managed_account.create`, `api_key.revoke`, `credit` …).
    pub change_type: &'static str,
    /// The changed resource's id (an account id, a key id, an entry id …).
    pub resource_id: String,
    /// The fields that changed.
    pub changes: Vec<Change>,
}

/// Appends `event` in the caller's transaction.
pub async fn record(
    conn: &mut AnyConnection,
    actor: &Actor,
    event: &Event,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let changes = serde_json::to_string(&event.changes)
        .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode audit changes: {e}")))?;
    sqlx::query(
        "INSERT INTO audit_events (id, actor, action, account_id, details, created_at_ms, \
         change_made_by, actor_account_id, resource_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(actor.label())
    .bind(event.change_type)
    .bind(event.account.map(|a| a.to_string()))
    .bind(changes)
    .bind(now_ms)
    .bind(actor.change_made_by())
    .bind(actor.account().map(|a| a.to_string()))
    .bind(&event.resource_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// An event as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Event id.
    pub id: String,
    /// Telnyx's `change_made_by`.
    pub change_made_by: String,
    /// The account that acted, if an account did.
    pub actor_account_id: Option<String>,
    /// The kind of change.
    pub change_type: String,
    /// What changed.
    pub changes: Vec<Change>,
    /// The changed resource.
    pub resource_id: Option<String>,
    /// Whose trail.
    pub account_id: Option<String>,
    /// When, ms since the epoch.
    pub created_at_ms: i64,
}

/// Which events to read: one account's trail, within a time window, in order, one page.
#[derive(Debug, Clone)]
pub struct Query {
    /// Whose trail.
    pub account: AccountId,
    /// Created strictly after, ms.
    pub created_after_ms: Option<i64>,
    /// Created strictly before, ms.
    pub created_before_ms: Option<i64>,
    /// Newest first when true.
    pub descending: bool,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u64,
}

/// One page of an account's trail and the total count.
pub async fn list(
    conn: &mut AnyConnection,
    query: &Query,
) -> Result<(Vec<StoredEvent>, i64), sqlx::Error> {
    use sqlx::Row;
    let direction = if query.descending { "DESC" } else { "ASC" };
    // Unset bounds become the widest ones, so one statement serves every filter.
    let sql = format!(
        "SELECT id, change_made_by, actor_account_id, action, details, resource_id, account_id, \
         created_at_ms, COUNT(*) OVER () AS total FROM audit_events \
         WHERE account_id = $1 AND created_at_ms > $2 AND created_at_ms < $3 \
         ORDER BY created_at_ms {direction}, id {direction} LIMIT {} OFFSET {}",
        query.limit, query.offset
    );
    let rows = sqlx::query(&sql)
        .bind(query.account.to_string())
        .bind(query.created_after_ms.unwrap_or(i64::MIN))
        .bind(query.created_before_ms.unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
    let total = match rows.first() {
        Some(row) => row.try_get("total")?,
        None => {
            let sql = "SELECT COUNT(*) FROM audit_events \
                       WHERE account_id = $1 AND created_at_ms > $2 AND created_at_ms < $3";
            sqlx::query_scalar(sql)
                .bind(query.account.to_string())
                .bind(query.created_after_ms.unwrap_or(i64::MIN))
                .bind(query.created_before_ms.unwrap_or(i64::MAX))
                .fetch_one(&mut *conn)
                .await?
        }
    };
    let events = rows
        .iter()
        .map(|row| {
            let details: String = row.try_get("details")?;
            let made_by: Option<String> = row.try_get("change_made_by")?;
            Ok(StoredEvent {
                id: row.try_get("id")?,
                // Rows from before the trail had this column were all the operator's.
                change_made_by: made_by.unwrap_or_else(|| "telnyx".to_owned()),
                actor_account_id: row.try_get("actor_account_id")?,
                change_type: row.try_get("action")?,
                changes: decode_changes(&details),
                resource_id: row.try_get("resource_id")?,
                account_id: row.try_get("account_id")?,
                created_at_ms: row.try_get("created_at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((events, total))
}

/// The stored list of changes; rows written before the list existed hold an object of
/// fields, read as changes to those values.
fn decode_changes(details: &str) -> Vec<Change> {
    match serde_json::from_str::<Value>(details) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .filter_map(|item| {
                let field = item.get("field")?.as_str()?.to_owned();
                let from = item.get("from").cloned().unwrap_or(Value::Null);
                let to = item.get("to").cloned().unwrap_or(Value::Null);
                Some(Change { field, from, to })
            })
            .collect(),
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .map(|(field, to)| Change {
                field,
                from: Value::Null,
                to,
            })
            .collect(),
        _ => Vec::new(),
    }
}
