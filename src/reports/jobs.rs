//! Report jobs (Telnyx's legacy voice and messaging usage reports): a report asked for now
//! and computed in the background over the caller's account or its managed accounts.
//!
//! A job is a row. Any server's worker claims a pending job by writing a lease
//! (`claimed_until_ms`) in one conditional update, so two servers never run one job at
//! once; a job whose server died mid-run is claimed again once its lease has run out. The
//! result (rows as JSON, and CSV) is stored with the job and served from there.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};

use super::catalog::{Dimension, Metric, ReportProduct};
use super::query::{self, Cell, RangeError, Scope, TimeRange, UsageReport};
use crate::accounts::listing::{Page, PageRequest};
use crate::accounts::{self, Account, AccountError, AccountId, AccountKind};
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;
use crate::money::Money;

/// How long a claimed job is its worker's before another may take it over.
pub const CLAIM_LEASE_MS: i64 = 5 * 60 * 1000;

/// Rows one job's report may hold (accounts × breakdown values); beyond it the job fails
/// rather than store an unbounded result.
pub const RESULT_ROWS_MAX: u32 = 100_000;

/// Attempts at a job before it is marked failed (a job that crashes its worker each time
/// must not be retried for ever).
pub const ATTEMPTS_MAX: i64 = 5;

/// How often a worker looks for jobs created on other servers (its own server wakes it at
/// once).
pub const POLL_INTERVAL_MS: u64 = 1_000;

/// Runs jobs until `stop` turns true: whenever woken, and every [`POLL_INTERVAL_MS`].
/// A failure is logged and retried at the next poll (the job's lease frees it meanwhile).
pub async fn run_worker(
    db: Db,
    clock: ClockHandle,
    wake: std::sync::Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let interval = std::time::Duration::from_millis(POLL_INTERVAL_MS);
    while !*stop.borrow() {
        loop {
            match work_once(&db, &clock).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(error = %error, "Report worker failed: {error}");
                    break;
                }
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Which legacy report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Calls (CDR usage).
    Voice,
    /// Messages (MDR usage).
    Messaging,
}

impl JobKind {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voice => "voice",
            Self::Messaging => "messaging",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "voice" => Some(Self::Voice),
            "messaging" => Some(Self::Messaging),
            _ => None,
        }
    }
}

/// Telnyx's job statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// 1: waiting or running.
    Pending,
    /// 2: the result is ready.
    Complete,
    /// 3: it could not be computed; the reason says why.
    Failed,
}

impl JobStatus {
    /// Telnyx's number.
    pub fn code(self) -> i64 {
        match self {
            Self::Pending => 1,
            Self::Complete => 2,
            Self::Failed => 3,
        }
    }

    fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Pending),
            2 => Some(Self::Complete),
            3 => Some(Self::Failed),
            _ => None,
        }
    }
}

/// What a job is asked to compute (stored as given, echoed on every read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// Start, inclusive (ms).
    pub start_ms: i64,
    /// End, exclusive (ms).
    pub end_ms: i64,
    /// Telnyx's `aggregation_type` (Steward aggregates over everything: 0).
    pub aggregation_type: i64,
    /// Voice: 0 none, 1 number type, 2 country, 3 both.
    pub product_breakdown: i64,
    /// The managed accounts covered (empty: the caller's own usage).
    pub managed_accounts: Vec<String>,
    /// Whether every managed account of the caller is covered.
    pub select_all_managed_accounts: bool,
    /// Echoed as given (voice `connections`, messaging `profiles`).
    pub echo: Vec<String>,
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct Job {
    /// Id.
    pub id: String,
    /// Voice or messaging.
    pub kind: JobKind,
    /// Who asked.
    pub owner: AccountId,
    /// What was asked.
    pub request: JobRequest,
    /// Where it stands.
    pub status: JobStatus,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// The result (an object with `rows`), once complete.
    pub result: Option<Value>,
    /// Created, ms.
    pub created_at_ms: i64,
    /// Last changed, ms.
    pub updated_at_ms: i64,
}

/// Why a job request was refused or not found.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A value is not acceptable; the text says why and names the field.
    #[error("{detail}")]
    Invalid {
        /// JSON pointer of the field.
        pointer: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No such job (or not the caller's), or an account that is not the caller's.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Only managers report over managed accounts.
    #[error("only an approved manager can report on managed accounts")]
    NotManager,
    /// An account failure.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// A query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

fn invalid(pointer: &'static str, detail: impl Into<String>) -> JobError {
    JobError::Invalid {
        pointer,
        detail: detail.into(),
    }
}

/// Creates a pending job after checking it: the range, the aggregation Steward can do, and
/// that every named account is one of the caller's managed accounts (another's is a 404).
#[tracing::instrument(name = "steward.reports.create_job", skip_all, fields(account.id = %owner.id))]
pub async fn create(
    db: &Db,
    clock: &ClockHandle,
    owner: &Account,
    kind: JobKind,
    request: JobRequest,
    may_see_prices: bool,
) -> Result<Job, JobError> {
    TimeRange::new(request.start_ms, request.end_ms).map_err(|e| {
        let pointer = match e {
            RangeError::EndNotAtMidnight => "/end_time",
            _ => "/start_time",
        };
        invalid(pointer, e.to_string())
    })?;
    if request.aggregation_type != 0 {
        return Err(invalid(
            "/aggregation_type",
            "Steward aggregates over all usage (aggregation_type 0): it has no connections, \
             messaging profiles, tags or billing groups to aggregate by",
        ));
    }
    if !(0..=3).contains(&request.product_breakdown) {
        return Err(invalid(
            "/product_breakdown",
            "product_breakdown must be 0 (none), 1 (number type), 2 (country) or 3 (both)",
        ));
    }
    let covers_managed =
        request.select_all_managed_accounts || !request.managed_accounts.is_empty();
    if covers_managed && owner.kind != AccountKind::Manager {
        return Err(JobError::NotManager);
    }
    for id in &request.managed_accounts {
        let id = AccountId::parse(id).ok_or(JobError::NotFound("managed account"))?;
        accounts::managed_account(db, owner, id)
            .await
            .map_err(|e| match e {
                AccountError::NotFound => JobError::NotFound("managed account"),
                other => JobError::Account(other),
            })?;
    }
    let now_ms = to_epoch_ms(clock.now());
    let id = uuid::Uuid::now_v7().to_string();
    let request_json = serde_json::to_string(&request)
        .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode a job request: {e}")))?;
    sqlx::query(
        "INSERT INTO report_jobs (id, kind, owner_account_id, request, show_cost, status, \
         created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
    )
    .bind(&id)
    .bind(kind.as_str())
    .bind(owner.id.to_string())
    .bind(request_json)
    .bind(i64::from(may_see_prices))
    .bind(now_ms)
    .execute(&db.write)
    .await?;
    let mut conn = db.read.acquire().await?;
    find(&mut conn, owner.id, kind, &id)
        .await?
        .ok_or(JobError::NotFound("report"))
}

const JOB_COLUMNS: &str = "id, kind, owner_account_id, request, status, failure_reason, result, \
                           created_at_ms, updated_at_ms";

fn job_from_row(row: &sqlx::any::AnyRow) -> Result<Job, sqlx::Error> {
    let corrupt = |column: &str| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: format!("unexpected value in report_jobs.{column}").into(),
    };
    let request: String = row.try_get("request")?;
    let result: Option<String> = row.try_get("result")?;
    let owner: String = row.try_get("owner_account_id")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: JobKind::parse(&row.try_get::<String, _>("kind")?).ok_or_else(|| corrupt("kind"))?,
        owner: AccountId::parse(&owner).ok_or_else(|| corrupt("owner_account_id"))?,
        request: serde_json::from_str(&request).map_err(|_| corrupt("request"))?,
        status: JobStatus::from_code(row.try_get("status")?).ok_or_else(|| corrupt("status"))?,
        failure_reason: row.try_get("failure_reason")?,
        result: result
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|_| corrupt("result"))?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// One of the owner's (not deleted) jobs of `kind`.
pub async fn find(
    conn: &mut AnyConnection,
    owner: AccountId,
    kind: JobKind,
    id: &str,
) -> Result<Option<Job>, sqlx::Error> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM report_jobs WHERE id = $1 AND owner_account_id = $2 \
         AND kind = $3 AND deleted_at_ms IS NULL"
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(owner.to_string())
        .bind(kind.as_str())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(job_from_row).transpose()
}

/// The CSV of one of the owner's completed jobs (`None` if not found or not complete).
pub async fn csv(
    conn: &mut AnyConnection,
    kind: JobKind,
    id: &str,
) -> Result<Option<(AccountId, String)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT owner_account_id, csv FROM report_jobs WHERE id = $1 AND kind = $2 \
         AND deleted_at_ms IS NULL AND status = 2",
    )
    .bind(id)
    .bind(kind.as_str())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let owner: String = row.try_get("owner_account_id")?;
    let csv: Option<String> = row.try_get("csv")?;
    Ok(AccountId::parse(&owner).zip(csv))
}

/// One page of the owner's jobs of `kind`, newest first.
pub async fn list(
    db: &Db,
    owner: AccountId,
    kind: JobKind,
    page: PageRequest,
) -> Result<Page<Job>, sqlx::Error> {
    let mut conn = db.read.acquire().await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM report_jobs WHERE owner_account_id = $1 AND kind = $2 \
         AND deleted_at_ms IS NULL",
    )
    .bind(owner.to_string())
    .bind(kind.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM report_jobs WHERE owner_account_id = $1 AND kind = $2 \
         AND deleted_at_ms IS NULL ORDER BY created_at_ms DESC, id DESC LIMIT {} OFFSET {}",
        page.size(),
        page.offset()
    );
    let rows = sqlx::query(&sql)
        .bind(owner.to_string())
        .bind(kind.as_str())
        .fetch_all(&mut *conn)
        .await?;
    Ok(Page {
        items: rows.iter().map(job_from_row).collect::<Result<_, _>>()?,
        request: page,
        total_results: crate::db::non_negative(total),
    })
}

/// Deletes one of the owner's jobs; answers it as it was.
pub async fn delete(
    db: &Db,
    clock: &ClockHandle,
    owner: AccountId,
    kind: JobKind,
    id: &str,
) -> Result<Job, JobError> {
    let mut tx = db.begin_write().await?;
    let job = find(&mut tx, owner, kind, id)
        .await?
        .ok_or(JobError::NotFound("report"))?;
    sqlx::query("UPDATE report_jobs SET deleted_at_ms = $1, csv = NULL WHERE id = $2")
        .bind(to_epoch_ms(clock.now()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(job)
}

/// Claims the oldest pending job whose lease is free and runs it; false when there was none.
/// Any number of workers on one database may call this at once: the claim is one
/// conditional update, so each job runs on one worker at a time.
pub async fn work_once(db: &Db, clock: &ClockHandle) -> Result<bool, sqlx::Error> {
    let now_ms = to_epoch_ms(clock.now());
    let candidate: Option<String> = sqlx::query_scalar(
        "SELECT id FROM report_jobs WHERE status = 1 AND deleted_at_ms IS NULL \
         AND (claimed_until_ms IS NULL OR claimed_until_ms <= $1) ORDER BY created_at_ms, id LIMIT 1",
    )
    .bind(now_ms)
    .fetch_optional(&db.write)
    .await?;
    let Some(id) = candidate else {
        return Ok(false);
    };
    let claimed = sqlx::query(
        "UPDATE report_jobs SET claimed_until_ms = $1, attempts = attempts + 1 WHERE id = $2 \
         AND status = 1 AND (claimed_until_ms IS NULL OR claimed_until_ms <= $3)",
    )
    .bind(now_ms + CLAIM_LEASE_MS)
    .bind(&id)
    .bind(now_ms)
    .execute(&db.write)
    .await?
    .rows_affected()
        == 1;
    if claimed {
        run_claimed(db, clock, &id).await?;
    }
    // Another worker may have taken this one: there may still be others to do.
    Ok(true)
}

async fn run_claimed(db: &Db, clock: &ClockHandle, id: &str) -> Result<(), sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS}, show_cost, attempts FROM report_jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(&db.read)
    .await?;
    let job = job_from_row(&row)?;
    let show_cost = row.try_get::<i64, _>("show_cost")? != 0;
    let attempts: i64 = row.try_get("attempts")?;
    let outcome = if attempts > ATTEMPTS_MAX {
        Err(format!(
            "the report could not be computed in {ATTEMPTS_MAX} attempts"
        ))
    } else {
        compute(db, &job, show_cost).await
    };
    let now_ms = to_epoch_ms(clock.now());
    let (status, reason, result, csv) = match outcome {
        Ok((result, csv)) => (
            JobStatus::Complete,
            None,
            Some(result.to_string()),
            Some(csv),
        ),
        Err(reason) => (JobStatus::Failed, Some(reason), None, None),
    };
    sqlx::query(
        "UPDATE report_jobs SET status = $1, failure_reason = $2, result = $3, csv = $4, \
         updated_at_ms = $5, claimed_until_ms = NULL WHERE id = $6 AND status = 1",
    )
    .bind(status.code())
    .bind(reason)
    .bind(result)
    .bind(csv)
    .bind(now_ms)
    .bind(id)
    .execute(&db.write)
    .await?;
    tracing::info!(
        report.id = id,
        status = status.code(),
        "Report job {id} finished"
    );
    Ok(())
}

/// The report a job stands for: per account, broken down as asked.
fn report_for(job: &Job, scope: Scope, show_cost: bool) -> Result<UsageReport, String> {
    let range =
        TimeRange::new(job.request.start_ms, job.request.end_ms).map_err(|e| e.to_string())?;
    let (product, mut dimensions, mut metrics) = match job.kind {
        JobKind::Voice => (
            ReportProduct::SipTrunking,
            vec![Dimension::UserId, Dimension::Direction],
            vec![Metric::Count, Metric::CallSec],
        ),
        JobKind::Messaging => (
            ReportProduct::Messaging,
            vec![
                Dimension::UserId,
                Dimension::Direction,
                Dimension::MessageType,
            ],
            vec![Metric::Count, Metric::Parts],
        ),
    };
    if matches!(job.request.product_breakdown, 2 | 3) {
        dimensions.push(Dimension::CountryCode);
    }
    if matches!(job.request.product_breakdown, 1 | 3) {
        dimensions.push(Dimension::NumberType);
    }
    if show_cost {
        if job.kind == JobKind::Voice {
            metrics.push(Metric::BilledSec);
        }
        metrics.push(Metric::Cost);
    }
    Ok(UsageReport {
        product,
        dimensions,
        metrics,
        range,
        filters: Vec::new(),
        sort: Vec::new(),
        scope,
        page: PageRequest::new(1, RESULT_ROWS_MAX, RESULT_ROWS_MAX).unwrap_or_default(),
    })
}

async fn compute(db: &Db, job: &Job, show_cost: bool) -> Result<(Value, String), String> {
    let mut conn = db.read.acquire().await.map_err(|e| e.to_string())?;
    let scopes: Vec<Scope> = if job.request.select_all_managed_accounts {
        vec![Scope::ManagedAccountsOf(job.owner)]
    } else if job.request.managed_accounts.is_empty() {
        vec![Scope::Account(job.owner)]
    } else {
        job.request
            .managed_accounts
            .iter()
            .filter_map(|id| AccountId::parse(id))
            .map(Scope::Account)
            .collect()
    };
    let mut columns: Vec<&'static str> = Vec::new();
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    for scope in scopes {
        let report = report_for(job, scope, show_cost)?;
        columns = report
            .dimensions
            .iter()
            .map(|d| d.name())
            .chain(report.metrics.iter().map(|m| m.name()))
            .collect();
        let (page, total) = query::run(&mut conn, &report)
            .await
            .map_err(|e| format!("the report query failed: {e}"))?;
        let held = u64::try_from(rows.len() + page.len()).unwrap_or(u64::MAX);
        if total > u64::from(RESULT_ROWS_MAX) || held > u64::from(RESULT_ROWS_MAX) {
            return Err(format!(
                "the report would hold more than {RESULT_ROWS_MAX} rows; ask for a shorter range or fewer accounts"
            ));
        }
        rows.extend(page);
    }
    Ok(render(&columns, &rows))
}

/// The result object (`{"rows": [...], "currency": "USD"}`) and the CSV of `rows`.
pub fn render(columns: &[&'static str], rows: &[Vec<Cell>]) -> (Value, String) {
    let mut csv = columns.join(",");
    csv.push('\n');
    let mut objects = Vec::with_capacity(rows.len());
    for row in rows {
        let mut object = serde_json::Map::new();
        let mut line = Vec::with_capacity(row.len());
        for (column, cell) in columns.iter().zip(row) {
            let (value, text) = match cell {
                Cell::Text(text) => (Value::from(text.as_str()), csv_field(text)),
                Cell::Int(n) => (Value::from(*n), n.to_string()),
                Cell::Nanos(nanos) => {
                    let text = decimal(*nanos);
                    (Value::from(text.as_str()), text)
                }
            };
            object.insert((*column).to_owned(), value);
            line.push(text);
        }
        objects.push(Value::Object(object));
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    (
        json!({"rows": objects, "currency": crate::billing::CURRENCY}),
        csv,
    )
}

/// An amount as an exact decimal with at least two places (no trailing zeros beyond).
pub fn decimal(nanos: i64) -> String {
    let full = Money::from_nanos(nanos).to_decimal_string(9);
    let trimmed = full.trim_end_matches('0');
    match trimmed.split_once('.') {
        Some((_, fraction)) if fraction.len() >= 2 => trimmed.to_owned(),
        _ => Money::from_nanos(nanos).to_decimal_string(2),
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_with_at_least_two_places() {
        assert_eq!(decimal(12_000_000), "0.012");
        assert_eq!(decimal(2_000_000_000), "2.00");
        assert_eq!(decimal(1), "0.000000001");
        assert_eq!(decimal(-50_000_000), "-0.05");
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
