//! `steward admin copy-database`: moves a platform from one database to another (typically
//! from the embedded SQLite default to PostgreSQL), losing nothing.
//!
//! Every table the migrations made is copied, whatever it holds, so the copy follows the
//! schema as it grows: tables and columns are read from the source's catalogue, ordered so
//! that a table comes after the tables it references, and rows are streamed in primary-key
//! order (a manager's row, created first, before its managed accounts'). The source is read
//! from one snapshot; the target is written in one transaction, so it ends either complete
//! or untouched. The target must be empty (freshly migrated): a copy never merges.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use futures_util::TryStreamExt;
use sqlx::{Any, AnyConnection, Connection, Row};

use super::Db;

/// Rows read from the source before they are written to the target.
const CHUNK_ROWS: usize = 2_000;

/// Tables the copy never touches: the migration ledger of each database is its own.
const SKIPPED_TABLES: [&str; 1] = ["_sqlx_migrations"];

/// Tables derived from others and kept by the target's own triggers as the rows arrive
/// (SQLite's trigram index of accounts, its FTS5 shadow tables and its row ids).
const DERIVED_TABLE_PREFIX: &str = "account_search";

fn is_copied(name: &str) -> bool {
    !SKIPPED_TABLES.contains(&name) && !name.starts_with(DERIVED_TABLE_PREFIX)
}

/// Tables whose rows make a database "in use": a target holding any is refused.
const TABLES_OF_A_PLATFORM_IN_USE: [&str; 4] =
    ["accounts", "journal_entries", "price_lists", "service_keys"];

/// What a column holds, as far as moving it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Integer,
    Text,
    Bytes,
}

/// One table of the source: its columns (in order), its primary key and what it references.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<(String, ColumnKind)>,
    primary_key: Vec<String>,
    references: BTreeSet<String>,
}

/// The tables copied and their row counts.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// Rows copied per table, in the order they were copied.
    pub tables: Vec<(String, u64)>,
    /// Balances compared between source and target.
    pub books: u64,
}

fn kind_of(declared: &str) -> ColumnKind {
    let declared = declared.to_ascii_lowercase();
    if declared.contains("int") {
        ColumnKind::Integer
    } else if declared.contains("blob") || declared.contains("bytea") {
        ColumnKind::Bytes
    } else {
        ColumnKind::Text
    }
}

/// A name from the catalogue, safe to put in SQL (the migrations name things plainly).
fn identifier(name: &str) -> anyhow::Result<&str> {
    anyhow::ensure!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "unexpected name in the database catalogue: {name:?}"
    );
    Ok(name)
}

async fn sqlite_tables(conn: &mut AnyConnection) -> anyhow::Result<Vec<Table>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tables = Vec::new();
    for name in names {
        let table = identifier(&name)?.to_owned();
        let info = sqlx::query(&format!(
            "SELECT name, type, pk FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let mut columns = Vec::new();
        let mut keys: Vec<(i64, String)> = Vec::new();
        for row in info {
            let column: String = row.try_get("name")?;
            let declared: String = row.try_get("type")?;
            let pk: i64 = row.try_get("pk")?;
            if pk > 0 {
                keys.push((pk, column.clone()));
            }
            columns.push((identifier(&column)?.to_owned(), kind_of(&declared)));
        }
        keys.sort();
        let references: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT \"table\" FROM pragma_foreign_key_list('{table}')"
        ))
        .fetch_all(&mut *conn)
        .await?;
        tables.push(Table {
            name: table,
            columns,
            primary_key: keys.into_iter().map(|(_, c)| c).collect(),
            references: references.into_iter().collect(),
        });
    }
    Ok(tables)
}

// The catalogue proper rather than information_schema, whose views scan every schema of
// the database (slow where a database holds many).
const POSTGRES_TABLE: &str = "(SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = current_schema() AND c.relname = $1)";

async fn postgres_tables(conn: &mut AnyConnection) -> anyhow::Result<Vec<Table>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tables = Vec::new();
    for name in names {
        let table = identifier(&name)?.to_owned();
        let info = sqlx::query(&format!(
            "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type \
             FROM pg_attribute a WHERE a.attrelid = {POSTGRES_TABLE} \
             AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ))
        .bind(&table)
        .fetch_all(&mut *conn)
        .await?;
        let mut columns = Vec::new();
        for row in info {
            let column: String = row.try_get("name")?;
            let declared: String = row.try_get("type")?;
            columns.push((identifier(&column)?.to_owned(), kind_of(&declared)));
        }
        let primary_key: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = {POSTGRES_TABLE} AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)"
        ))
        .bind(&table)
        .fetch_all(&mut *conn)
        .await?;
        let references: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT DISTINCT r.relname::text FROM pg_constraint k \
             JOIN pg_class r ON r.oid = k.confrelid \
             WHERE k.conrelid = {POSTGRES_TABLE} AND k.contype = 'f'"
        ))
        .bind(&table)
        .fetch_all(&mut *conn)
        .await?;
        tables.push(Table {
            name: table,
            columns,
            primary_key,
            references: references.into_iter().collect(),
        });
    }
    Ok(tables)
}

/// The tables in an order where each comes after the tables it references (a table that
/// references itself, like accounts, is ordered by its rows' primary key instead).
fn in_dependency_order(tables: Vec<Table>) -> anyhow::Result<Vec<Table>> {
    let mut pending: BTreeMap<String, Table> = tables
        .into_iter()
        .filter(|t| is_copied(&t.name))
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut ordered: Vec<Table> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready: Vec<String> = pending
            .values()
            .filter(|t| {
                t.references
                    .iter()
                    .all(|r| r == &t.name || !pending.contains_key(r))
            })
            .map(|t| t.name.clone())
            .collect();
        anyhow::ensure!(!ready.is_empty(), "the tables' references form a cycle");
        for name in ready {
            if let Some(table) = pending.remove(&name) {
                ordered.push(table);
            }
        }
    }
    Ok(ordered)
}

/// One value as read, kept in its kind.
#[derive(Debug, Clone)]
enum Value {
    Integer(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

fn read_row(row: &sqlx::any::AnyRow, table: &Table) -> anyhow::Result<Vec<Value>> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            let value = match kind {
                ColumnKind::Integer => Value::Integer(row.try_get(i)?),
                ColumnKind::Text => Value::Text(row.try_get(i)?),
                ColumnKind::Bytes => Value::Bytes(row.try_get(i)?),
            };
            anyhow::Ok(value)
        })
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("Failed to read a row of {}", table.name))
}

async fn write_rows(
    conn: &mut AnyConnection,
    table: &Table,
    rows: &[Vec<Value>],
) -> anyhow::Result<()> {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| c.as_str()).collect();
    let per_statement = super::insert_chunk_rows(conn, columns.len());
    for chunk in rows.chunks(per_statement) {
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            table.name,
            columns.join(", ")
        );
        let mut n = 0;
        for (r, _) in chunk.iter().enumerate() {
            if r > 0 {
                sql.push_str(", ");
            }
            let marks: Vec<String> = columns
                .iter()
                .map(|_| {
                    n += 1;
                    format!("${n}")
                })
                .collect();
            sql.push('(');
            sql.push_str(&marks.join(", "));
            sql.push(')');
        }
        let mut query = sqlx::query::<Any>(&sql);
        for row in chunk {
            for value in row {
                query = match value {
                    Value::Integer(v) => query.bind(*v),
                    Value::Text(v) => query.bind(v.clone()),
                    Value::Bytes(v) => query.bind(v.clone()),
                };
            }
        }
        query
            .execute(&mut *conn)
            .await
            .with_context(|| format!("Failed to write rows of {}", table.name))?;
    }
    Ok(())
}

/// Refuses a target that already holds a platform.
async fn ensure_empty(conn: &mut AnyConnection) -> anyhow::Result<()> {
    for table in TABLES_OF_A_PLATFORM_IN_USE {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await?;
        anyhow::ensure!(
            rows == 0,
            "the target database is not empty ({table} has {rows} rows): copy into a new, empty database"
        );
    }
    Ok(())
}

/// Copies everything from `source` to `target` (both migrated by [`Db::connect`]). Before
/// it commits, it checks that each table holds as many rows as it read, and then runs
/// `check` over the source's snapshot and the target's transaction (in that order). `check`
/// compares what the rows mean, such as the books' balances, and returns how many things it
/// compared. Its error undoes the copy.
pub async fn copy_database<F>(source: &Db, target: &Db, check: F) -> anyhow::Result<CopyReport>
where
    F: AsyncFnOnce(&mut AnyConnection, &mut AnyConnection) -> anyhow::Result<u64>,
{
    let mut read = source.read.acquire().await?;
    let tables = match source.backend {
        super::Backend::Sqlite => sqlite_tables(&mut read).await?,
        super::Backend::Postgres => postgres_tables(&mut read).await?,
    };
    let tables = in_dependency_order(tables)?;
    // One snapshot of the source for the whole copy.
    let begin = super::snapshot_begin(&read);
    let mut snapshot = read.begin_with(begin).await?;
    let mut write = target.begin_write().await?;
    ensure_empty(&mut write).await?;
    // What the target's migrations and first start wrote (singleton rows, one-time upgrade
    // marks, its own secrets) gives way to the source's.
    for table in tables.iter().rev() {
        sqlx::query(&format!("DELETE FROM {}", table.name))
            .execute(&mut *write)
            .await
            .with_context(|| format!("Failed to clear {} in the target", table.name))?;
    }
    let mut report = CopyReport::default();
    for table in &tables {
        let columns: Vec<&str> = table.columns.iter().map(|(c, _)| c.as_str()).collect();
        let order = if table.primary_key.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {}", table.primary_key.join(", "))
        };
        let sql = format!("SELECT {} FROM {}{order}", columns.join(", "), table.name);
        let mut rows = sqlx::query::<Any>(&sql).fetch(&mut *snapshot);
        let mut chunk = Vec::with_capacity(CHUNK_ROWS);
        let mut copied = 0_u64;
        while let Some(row) = rows.try_next().await? {
            chunk.push(read_row(&row, table)?);
            if chunk.len() == CHUNK_ROWS {
                write_rows(&mut write, table, &chunk).await?;
                copied += u64::try_from(chunk.len()).unwrap_or(0);
                chunk.clear();
            }
        }
        drop(rows);
        write_rows(&mut write, table, &chunk).await?;
        copied += u64::try_from(chunk.len()).unwrap_or(0);
        report.tables.push((table.name.clone(), copied));
    }
    // Check before committing: the target holds what the snapshot holds, table by table.
    for (name, copied) in &report.tables {
        let held: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {name}"))
            .fetch_one(&mut *write)
            .await?;
        anyhow::ensure!(
            u64::try_from(held).ok() == Some(*copied),
            "the copy of {name} holds {held} rows instead of {copied}"
        );
    }
    report.books = check(&mut snapshot, &mut write).await?;
    write.commit().await.context("Failed to commit the copy")?;
    snapshot.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, references: &[&str]) -> Table {
        Table {
            name: name.to_owned(),
            columns: Vec::new(),
            primary_key: Vec::new(),
            references: references.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn tables_come_after_those_they_reference() {
        let ordered = in_dependency_order(vec![
            table("usage_records", &["accounts"]),
            table("api_keys", &["accounts"]),
            table("accounts", &["accounts"]),
            table("_sqlx_migrations", &[]),
            table("account_search", &[]),
            table("account_search_data", &[]),
            table("account_search_ids", &[]),
            table("postings", &["journal_entries"]),
            table("journal_entries", &["accounts"]),
        ])
        .unwrap();
        let names: Vec<&str> = ordered.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"accounts"));
        let position = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(position("journal_entries") < position("postings"));
        assert!(!names.contains(&"_sqlx_migrations"));
        assert!(!names.iter().any(|n| n.starts_with("account_search")));
        assert!(in_dependency_order(vec![table("a", &["b"]), table("b", &["a"])]).is_err());
    }

    #[tokio::test]
    async fn a_failed_check_leaves_the_target_as_it_was() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let open = async |name: &str| {
            let url = format!("sqlite://{}/{name}.db", dir.path().display());
            Db::connect(&crate::config::DatabaseUrl::parse(&url).expect("url"))
                .await
                .expect("database")
        };
        let (source, target) = (open("source").await, open("target").await);
        let named = "SELECT COUNT(*) FROM platform_settings WHERE value = 'Copied'";
        sqlx::query(
            "INSERT INTO platform_settings (name, value, updated_at_ms) \
             VALUES ('platform_name', 'Copied', 0)",
        )
        .execute(&source.write)
        .await
        .expect("a setting");
        let mut checked = false;
        let copied = copy_database(&source, &target, async |source, target| {
            checked = true;
            // Each side as the copy left it: the source's snapshot, the target's rows.
            let read: i64 = sqlx::query_scalar(named).fetch_one(&mut *source).await?;
            let held: i64 = sqlx::query_scalar(named).fetch_one(&mut *target).await?;
            anyhow::ensure!(read == 1 && held == 1, "the check saw {read} and {held}");
            anyhow::bail!("refused by the check")
        })
        .await;
        assert!(checked);
        let error = copied.expect_err("the check refused the copy").to_string();
        assert!(error.contains("refused by the check"), "{error}");
        let left: i64 = sqlx::query_scalar(named)
            .fetch_one(&target.read)
            .await
            .expect("count");
        assert_eq!(left, 0, "the target kept what a refused copy wrote");
        source.close().await;
        target.close().await;
    }

    #[test]
    fn catalogue_names_are_plain() {
        assert!(identifier("usage_records").is_ok());
        assert!(identifier("x; DROP TABLE y").is_err());
        assert_eq!(kind_of("BIGINT"), ColumnKind::Integer);
        assert_eq!(kind_of("bigint"), ColumnKind::Integer);
        assert_eq!(kind_of("TEXT"), ColumnKind::Text);
        assert_eq!(kind_of("bytea"), ColumnKind::Bytes);
    }
}
