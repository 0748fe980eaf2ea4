//! Admissions and lease releases decided in batches.
//!
//! Each admission is a durable commit under its account's row lock, and most of what one
//! costs is the transaction around it: its statements' round trips and the commit. So a
//! server's admissions and releases queue here, and whatever has queued while the last
//! batch ran is decided together in one transaction: releases first, then every admission
//! under the row locks of all the batch's accounts, taken in id order (two servers' batches
//! over overlapping accounts wait for each other, never in a cycle), with a few set-based
//! statements whatever the batch's size. Nobody is answered before the batch has committed,
//! and a lone request never waits for company: it finds the queue idle and runs at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use sqlx::{AnyConnection, Row};
use tokio::sync::{mpsc, oneshot};

use super::{
    AdmissionError, Decision, LEASE_COLUMNS, Lease, LeaseState, Released, Request, counts_channels,
    decide, lease_from_row,
};
use crate::accounts::AccountId;
use crate::billing::payer_of;
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::{Db, JsonColumn, json_rows_select, placeholders};

/// Most requests one batch takes: enough that a full queue drains in a few transactions,
/// few enough that one transaction's statements stay small.
const BATCH_REQUESTS_MAX: usize = 512;

/// Requests waiting for the batcher before callers wait to queue.
const QUEUE_REQUESTS_MAX: usize = 4096;

/// One queued request and where its answer goes.
enum Queued {
    Admit(Request, oneshot::Sender<Result<Decision, AdmissionError>>),
    Release(String, oneshot::Sender<Result<Released, AdmissionError>>),
}

impl Queued {
    /// Whether the caller has stopped waiting (its request timed out or was dropped):
    /// deciding for it would only hold a channel nobody uses until the lease expired.
    fn abandoned(&self) -> bool {
        match self {
            Self::Admit(_, reply) => reply.is_closed(),
            Self::Release(_, reply) => reply.is_closed(),
        }
    }
}

/// Told the number of requests of each batch decided (the server's metrics).
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

/// A server's admission queue (its batcher starts with the first request).
pub struct Admissions {
    db: Db,
    clock: ClockHandle,
    observer: Option<BatchObserver>,
    queue: OnceLock<mpsc::Sender<Queued>>,
}

impl std::fmt::Debug for Admissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admissions").finish_non_exhaustive()
    }
}

fn stopped() -> AdmissionError {
    AdmissionError::Database(sqlx::Error::PoolClosed)
}

impl Admissions {
    /// The queue of a server on `db`.
    pub fn new(db: Db, clock: ClockHandle) -> Self {
        Self {
            db,
            clock,
            observer: None,
            queue: OnceLock::new(),
        }
    }

    /// Tells `observer` the size of each batch decided.
    pub fn observed_by(mut self, observer: BatchObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    fn queue(&self) -> &mpsc::Sender<Queued> {
        self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE_REQUESTS_MAX);
            let batcher = Batcher {
                db: self.db.clone(),
                clock: self.clock.clone(),
                observer: self.observer.clone(),
            };
            tokio::spawn(batcher.run(receiver));
            sender
        })
    }

    /// Decides whether `request.account_id` may start `request.product` usage now.
    #[tracing::instrument(name = "steward.admission.admit", skip_all, fields(account.id = %request.account_id, product = request.product.as_str()))]
    pub async fn admit(&self, request: Request) -> Result<Decision, AdmissionError> {
        let (reply, answer) = oneshot::channel();
        self.queue()
            .send(Queued::Admit(request, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Ends a lease (the call is over). Releasing twice changes nothing: the answer says
    /// whether this call ended it (`released_now`) or it had already ended.
    pub async fn release(&self, lease_id: &str) -> Result<Released, AdmissionError> {
        let (reply, answer) = oneshot::channel();
        self.queue()
            .send(Queued::Release(lease_id.to_owned(), reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// What the batcher works with.
struct Batcher {
    db: Db,
    clock: ClockHandle,
    observer: Option<BatchObserver>,
}

impl Batcher {
    /// Takes whatever has queued, decides it in one transaction, answers, again. One batch
    /// at a time: a second one beside it was measured slower on PostgreSQL (smaller
    /// batches, more commits, and two servers' batches waiting on each other's row locks).
    /// It ends when the server's queue is dropped.
    async fn run(self, mut receiver: mpsc::Receiver<Queued>) {
        let mut queued = Vec::with_capacity(BATCH_REQUESTS_MAX);
        while receiver.recv_many(&mut queued, BATCH_REQUESTS_MAX).await > 0 {
            self.decide(std::mem::take(&mut queued)).await;
        }
    }

    /// Decides one batch and answers each of its callers.
    async fn decide(&self, queued: Vec<Queued>) {
        let mut admits = Vec::new();
        let mut admit_replies = Vec::new();
        let mut releases = Vec::new();
        let mut release_replies = Vec::new();
        for request in queued.into_iter().filter(|q| !q.abandoned()) {
            match request {
                Queued::Admit(request, reply) => {
                    admits.push(request);
                    admit_replies.push(reply);
                }
                Queued::Release(lease_id, reply) => {
                    releases.push(lease_id);
                    release_replies.push(reply);
                }
            }
        }
        if admits.is_empty() && releases.is_empty() {
            return;
        }
        if let Some(observer) = &self.observer {
            observer(admits.len() + releases.len());
        }
        let now_ms = to_epoch_ms(self.clock.now());
        tracing::debug!(
            admissions = admits.len(),
            releases = releases.len(),
            "deciding a batch"
        );
        let outcome = self
            .db
            .write_grouped(move |conn| {
                Box::pin(async move {
                    let released = release_in_tx(conn, &releases, now_ms).await?;
                    let decided = admit_in_tx(conn, &admits, now_ms).await?;
                    Ok((decided, released))
                })
            })
            .await;
        match outcome {
            Ok((decided, released)) => {
                for (reply, answer) in admit_replies.into_iter().zip(decided) {
                    let _ = reply.send(answer);
                }
                for (reply, answer) in release_replies.into_iter().zip(released) {
                    let _ = reply.send(answer);
                }
            }
            Err(error) => {
                for reply in admit_replies {
                    let _ = reply.send(Err(sqlx_error(&error)));
                }
                for reply in release_replies {
                    let _ = reply.send(Err(sqlx_error(&error)));
                }
            }
        }
    }
}

fn sqlx_error(error: &sqlx::Error) -> AdmissionError {
    AdmissionError::Database(crate::db::replicate(error))
}

fn encode<T: serde::Serialize>(rows: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows)
        .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode admission rows: {e}")))
}

/// Decides `requests` in order in the caller's transaction, one answer each.
async fn admit_in_tx(
    conn: &mut AnyConnection,
    requests: &[Request],
    now_ms: i64,
) -> Result<Vec<Result<Decision, AdmissionError>>, sqlx::Error> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<AccountId> = requests.iter().map(|r| r.account_id).collect();
    // The row locks serialise every admission of these accounts across processes.
    let accounts = crate::accounts::repo::lock_many(&mut *conn, &ids).await?;
    let payers: Vec<AccountId> = accounts
        .values()
        .map(|locked| payer_of(&locked.account))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let balances = crate::ledger::repo::account_balances(&mut *conn, &payers).await?;
    let counted: Vec<AccountId> = requests
        .iter()
        .filter_map(|r| {
            let locked = accounts.get(&r.account_id)?;
            counts_channels(&locked.account, locked.manager_pool, r.product).then_some(r.account_id)
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut live_outbound = live_outbound_leases(&mut *conn, &counted, now_ms).await?;

    let mut answers = Vec::with_capacity(requests.len());
    let mut granted: Vec<(&Request, Lease)> = Vec::new();
    for request in requests {
        let Some(locked) = accounts.get(&request.account_id) else {
            answers.push(Err(AdmissionError::NotFound("account")));
            continue;
        };
        let figures = balances
            .get(&payer_of(&locked.account))
            .copied()
            .unwrap_or_default();
        let available_nanos = figures
            .balance
            .nanos()
            .saturating_add(figures.credit_limit.nanos());
        let live = live_outbound.entry(request.account_id).or_insert(0);
        let decision = match decide(
            &locked.account,
            locked.manager_pool,
            available_nanos,
            *live,
            request.product,
        ) {
            Err(refusal) => Decision::Refused(refusal),
            Ok(false) => Decision::Admitted(None),
            Ok(true) => {
                if counts_channels(&locked.account, locked.manager_pool, request.product) {
                    *live += 1;
                }
                let lease = Lease {
                    id: super::lease_id(now_ms),
                    expires_at_ms: now_ms.saturating_add(i64::from(request.ttl_s) * 1000),
                };
                granted.push((request, lease.clone()));
                Decision::Admitted(Some(lease))
            }
        };
        answers.push(Ok(decision));
    }
    insert_leases(conn, &granted, now_ms).await?;
    Ok(answers)
}

/// Live outbound leases of each of `accounts` at `now_ms` (absent: none).
async fn live_outbound_leases(
    conn: &mut AnyConnection,
    accounts: &[AccountId],
    now_ms: i64,
) -> Result<HashMap<AccountId, i64>, sqlx::Error> {
    let mut live = HashMap::with_capacity(accounts.len());
    if accounts.is_empty() {
        return Ok(live);
    }
    let sql = format!(
        "SELECT account_id, COUNT(*) AS live FROM channel_leases WHERE account_id IN ({}) \
         AND product = 'voice_outbound' AND released_at_ms IS NULL AND expires_at_ms > $1 \
         GROUP BY account_id",
        placeholders(2, accounts.len())
    );
    // Planned for each call, with `now_ms` seen: a generic plan takes most leases for live
    // and scans the whole table instead of the live index.
    let mut query = sqlx::query(&sql).persistent(false).bind(now_ms);
    for id in accounts {
        query = query.bind(id.to_string());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    for row in rows {
        let id: String = row.try_get("account_id")?;
        if let Some(id) = AccountId::parse(&id) {
            live.insert(id, row.try_get("live")?);
        }
    }
    Ok(live)
}

async fn insert_leases(
    conn: &mut AnyConnection,
    granted: &[(&Request, Lease)],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if granted.is_empty() {
        return Ok(());
    }
    use JsonColumn::{BigInt, Text};
    let rows: Vec<(&str, String, &str, &str, i64, i64)> = granted
        .iter()
        .map(|(request, lease)| {
            (
                lease.id.as_str(),
                request.account_id.to_string(),
                request.product.as_str(),
                request.destination.as_str(),
                now_ms,
                lease.expires_at_ms,
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO channel_leases (id, account_id, product, destination, created_at_ms, expires_at_ms) {}",
        json_rows_select(conn, 1, &[Text, Text, Text, Text, BigInt, BigInt])
    );
    sqlx::query(&sql)
        .bind(encode(&rows)?)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Ends the live leases among `lease_ids` in the caller's transaction and reads each back,
/// one answer per id in order (the same id twice: the first ends it, the second finds it
/// ended).
async fn release_in_tx(
    conn: &mut AnyConnection,
    lease_ids: &[String],
    now_ms: i64,
) -> Result<Vec<Result<Released, AdmissionError>>, sqlx::Error> {
    if lease_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut distinct: Vec<&str> = lease_ids.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    // The leases this batch ends come back with their state; only the others (already
    // ended, or unknown) are read, which in the usual case is none.
    let sql = format!(
        "UPDATE channel_leases SET released_at_ms = $1 WHERE id IN ({}) \
         AND released_at_ms IS NULL AND expires_at_ms > $1 RETURNING {LEASE_COLUMNS}",
        placeholders(2, distinct.len())
    );
    let mut ended = sqlx::query(&sql).persistent(false).bind(now_ms);
    for id in &distinct {
        ended = ended.bind(*id);
    }
    let mut states: HashMap<String, LeaseState> = HashMap::with_capacity(distinct.len());
    for row in ended.fetch_all(&mut *conn).await? {
        let state = lease_from_row(&row, now_ms)?;
        states.insert(state.id.clone(), state);
    }
    let mut ended_now: HashSet<String> = states.keys().cloned().collect();
    let others: Vec<&str> = distinct
        .into_iter()
        .filter(|id| !states.contains_key(*id))
        .collect();
    if !others.is_empty() {
        let sql = format!(
            "SELECT {LEASE_COLUMNS} FROM channel_leases WHERE id IN ({})",
            placeholders(1, others.len())
        );
        let mut read = sqlx::query(&sql).persistent(false);
        for id in &others {
            read = read.bind(*id);
        }
        for row in read.fetch_all(&mut *conn).await? {
            let state = lease_from_row(&row, now_ms)?;
            states.insert(state.id.clone(), state);
        }
    }
    Ok(lease_ids
        .iter()
        .map(|id| match states.get(id) {
            None => Err(AdmissionError::NotFound("lease")),
            Some(state) => Ok(Released {
                lease: state.clone(),
                released_now: ended_now.remove(id),
            }),
        })
        .collect())
}
