//! Group commit for SQLite's one writer.
//!
//! SQLite writes one transaction at a time, and part of what each costs does not grow with
//! its rows: the log sync that makes it durable, and the rewrite of index pages that
//! concurrent batches of random keys share. Writes that arrive while another is committing
//! therefore queue here and then share one transaction: each runs in a savepoint of its own
//! (so one failing write is undone alone) and learns its outcome only after the shared
//! commit, so nothing is acknowledged before it is durable. On PostgreSQL, whose connections commit
//! side by side and already share log flushes, each write is its own transaction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

/// Most writes one shared transaction takes: enough to amortize a commit, few enough that
/// the first in a group does not wait long for the last.
const GROUP_WRITES_MAX: usize = 8;

/// One queued write, its output type erased.
trait Job: Send {
    /// Runs the write in the open transaction; true when it succeeded.
    fn run<'a>(&'a mut self, conn: &'a mut AnyConnection) -> BoxFuture<'a, bool>;
    /// Answers the caller: its own outcome if the group committed (or if it failed itself),
    /// otherwise the error that undid the group.
    fn finish(self: Box<Self>, group: Result<(), &sqlx::Error>);
}

struct Typed<T, F> {
    work: Option<F>,
    result: Option<Result<T, sqlx::Error>>,
    reply: oneshot::Sender<Result<T, sqlx::Error>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>
        + Send
        + 'static,
{
    fn run<'a>(&'a mut self, conn: &'a mut AnyConnection) -> BoxFuture<'a, bool> {
        let work = self.work.take();
        Box::pin(async move {
            let Some(work) = work else {
                return false;
            };
            let result = work(conn).await;
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn finish(self: Box<Self>, group: Result<(), &sqlx::Error>) {
        let answer = match (group, self.result) {
            (_, Some(Err(own))) => Err(own),
            (Ok(()), Some(Ok(output))) => Ok(output),
            (Ok(()), None) => Err(sqlx::Error::Protocol("the write did not run".to_owned())),
            (Err(group), _) => Err(replicate(group)),
        };
        // The writer may have stopped waiting (its request was dropped): nothing to tell.
        let _ = self.reply.send(answer);
    }
}

/// The same error for each write a failed transaction undid (`sqlx::Error` is not `Clone`): pool
/// exhaustion keeps its kind, which callers answer as "try again".
pub fn replicate(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        other => sqlx::Error::Protocol(format!("the shared write transaction failed: {other}")),
    }
}

/// The queue in front of SQLite's writer (started with the first write).
#[derive(Default)]
pub struct GroupCommit {
    sender: Mutex<Option<mpsc::UnboundedSender<Box<dyn Job>>>>,
    tally: Arc<Tally>,
}

#[derive(Debug, Default)]
struct Tally {
    transactions: AtomicU64,
    writes: AtomicU64,
}

/// Shared transactions the writer has run (committed or not) and the writes they held: the
/// second divided by the first is the mean group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupCounts {
    /// Transactions run.
    pub transactions: u64,
    /// Writes they held.
    pub writes: u64,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Runs `work` in a transaction on `pool` shared with the writes queued beside it;
    /// returns its output once that transaction has committed.
    pub async fn write<T, F>(&self, pool: &AnyPool, work: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.submit(
            pool,
            Box::new(Typed {
                work: Some(work),
                result: None,
                reply,
            }),
        );
        answer
            .await
            .map_err(|_| sqlx::Error::Protocol("the database writer stopped".to_owned()))?
    }

    /// What the writer has done so far.
    pub fn counts(&self) -> GroupCounts {
        GroupCounts {
            transactions: self.tally.transactions.load(Ordering::Relaxed),
            writes: self.tally.writes.load(Ordering::Relaxed),
        }
    }

    fn submit(&self, pool: &AnyPool, job: Box<dyn Job>) {
        let mut sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A writer ends with the runtime that started it (a test's, a command's): the next
        // write starts another.
        let job = match sender.as_ref() {
            Some(live) => match live.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (send, receive) = mpsc::unbounded_channel();
        tokio::spawn(writer(pool.clone(), receive, Arc::clone(&self.tally)));
        // Just made, its receiver alive: the send cannot fail; if it did, the job is
        // dropped and its caller told that the writer stopped.
        let _ = send.send(job);
        *sender = Some(send);
    }
}

/// Takes what has queued (up to [`GROUP_WRITES_MAX`]) and writes it in one transaction.
async fn writer(pool: AnyPool, mut jobs: mpsc::UnboundedReceiver<Box<dyn Job>>, tally: Arc<Tally>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_WRITES_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        tally.transactions.fetch_add(1, Ordering::Relaxed);
        let writes = u64::try_from(group.len()).unwrap_or(u64::MAX);
        tally.writes.fetch_add(writes, Ordering::Relaxed);
        write_group(&pool, group).await;
    }
}

async fn write_group(pool: &AnyPool, mut group: Vec<Box<dyn Job>>) {
    tracing::debug!(writes = group.len(), "shared write transaction");
    let mut tx = match pool.begin_with(super::SQLITE_BEGIN_WRITE).await {
        Ok(tx) => tx,
        Err(e) => {
            for job in group {
                job.finish(Err(&e));
            }
            return;
        }
    };
    // Alone, a write needs no savepoint: its failure undoes the transaction.
    if let [job] = group.as_mut_slice() {
        let ok = job.run(&mut tx).await;
        let outcome = if ok {
            tx.commit().await
        } else {
            tx.rollback().await
        };
        for job in group {
            job.finish(outcome.as_ref().map(|_| ()));
        }
        return;
    }
    let mut failure = None;
    for job in &mut group {
        if let Err(e) = savepoint(&mut tx, "SAVEPOINT grouped_write").await {
            failure = Some(e);
            break;
        }
        let ok = job.run(&mut tx).await;
        let end = if ok {
            savepoint(&mut tx, "RELEASE grouped_write").await
        } else {
            savepoint(&mut tx, "ROLLBACK TO grouped_write; RELEASE grouped_write").await
        };
        if let Err(e) = end {
            failure = Some(e);
            break;
        }
    }
    let outcome = match failure {
        None => tx.commit().await,
        Some(e) => {
            // Dropping the transaction rolls it back; the first error is the one to tell.
            drop(tx);
            Err(e)
        }
    };
    for job in group {
        job.finish(outcome.as_ref().map(|_| ()));
    }
}

async fn savepoint(conn: &mut AnyConnection, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute(sqlx::raw_sql(sql)).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use sqlx::AnyConnection;

    use super::GroupCounts;
    use crate::config::DatabaseUrl;
    use crate::db::Db;

    async fn sqlite(dir: &tempfile::TempDir) -> Db {
        let url = format!("sqlite://{}/group.db", dir.path().display());
        let db = Db::connect(&DatabaseUrl::parse(&url).expect("url"))
            .await
            .expect("open");
        sqlx::query("CREATE TABLE grouped (id INTEGER PRIMARY KEY, writer TEXT NOT NULL)")
            .execute(&db.write)
            .await
            .expect("table");
        db
    }

    async fn insert(conn: &mut AnyConnection, id: i64, writer: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO grouped (id, writer) VALUES ($1, $2)")
            .bind(id)
            .bind(writer)
            .execute(conn)
            .await
            .map(|_| ())
    }

    /// Queues, from a task of its own, one write of `rows` in order.
    fn spawn_inserts(
        db: &Db,
        rows: &'static [(i64, &'static str)],
    ) -> tokio::task::JoinHandle<Result<(), sqlx::Error>> {
        let db = db.clone();
        tokio::spawn(async move {
            db.write_grouped(move |conn| {
                Box::pin(async move {
                    for (id, writer) in rows {
                        insert(&mut *conn, *id, writer).await?;
                    }
                    Ok(())
                })
            })
            .await
        })
    }

    async fn count(db: &Db) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM grouped")
            .fetch_one(&db.read)
            .await
            .expect("count")
            .get("n")
    }

    /// Writes queued behind a busy writer share its next transaction: one sees the other's
    /// row while nothing is committed yet; a failing write is undone alone and told why;
    /// every other write is committed and told so.
    #[tokio::test]
    async fn queued_writes_share_a_transaction_and_fail_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let db = sqlite(&dir).await;
        let (open_gate, gate) = tokio::sync::oneshot::channel::<()>();
        // Holds the writer until the others are queued.
        let holder = tokio::spawn({
            let db = db.clone();
            async move {
                db.write_grouped(move |conn| {
                    Box::pin(async move {
                        let _ = gate.await;
                        insert(conn, 1, "holder").await
                    })
                })
                .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let first = spawn_inserts(&db, &[(2, "first")]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // Writes a row, then collides with the first write's key: undone as a whole.
        let failing = spawn_inserts(&db, &[(3, "failing"), (2, "failing")]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // Sees the first write's row in its own transaction, while a reader sees none of it.
        let last = tokio::spawn({
            let db = db.clone();
            async move {
                let reader = db.clone();
                db.write_grouped(move |conn| {
                    Box::pin(async move {
                        let mine: i64 = sqlx::query("SELECT COUNT(*) AS n FROM grouped")
                            .fetch_one(&mut *conn)
                            .await?
                            .get("n");
                        let committed = count(&reader).await;
                        insert(conn, 4, "last").await?;
                        Ok((mine, committed))
                    })
                })
                .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        open_gate.send(()).expect("gate");
        holder.await.expect("join").expect("holder committed");
        first.await.expect("join").expect("first committed");
        let error = failing
            .await
            .expect("join")
            .expect_err("the colliding write fails");
        assert!(
            matches!(&error, sqlx::Error::Database(e) if e.is_unique_violation()),
            "{error}"
        );
        let (mine, committed) = last.await.expect("join").expect("last committed");
        assert_eq!(
            (mine, committed),
            (2, 1),
            "the last write sees the holder's committed row and the first's uncommitted one"
        );
        let writers: Vec<String> = sqlx::query("SELECT writer FROM grouped ORDER BY id")
            .fetch_all(&db.read)
            .await
            .expect("rows")
            .iter()
            .map(|row| row.get("writer"))
            .collect();
        assert_eq!(writers, ["holder", "first", "last"]);
        // The holder alone, then the three that queued behind it together.
        assert_eq!(
            db.group_commits(),
            GroupCounts {
                transactions: 2,
                writes: 4
            }
        );
    }

    /// A write whose caller stopped waiting still commits or not as a whole, and the
    /// writer goes on serving the next ones.
    #[tokio::test]
    async fn a_write_given_up_by_its_caller_does_not_stop_the_writer() {
        let dir = tempfile::tempdir().expect("dir");
        let db = sqlite(&dir).await;
        let abandoned = db.write_grouped(|conn| Box::pin(insert(conn, 1, "abandoned")));
        // Polled once (queued), then dropped.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(1), abandoned).await;
        db.write_grouped(|conn| Box::pin(insert(conn, 2, "next")))
            .await
            .expect("the next write commits");
        let next: i64 = sqlx::query("SELECT COUNT(*) AS n FROM grouped WHERE writer = 'next'")
            .fetch_one(&db.read)
            .await
            .expect("count")
            .get("n");
        assert_eq!(next, 1);
    }
}
