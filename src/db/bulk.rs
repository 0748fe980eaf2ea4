//! Reading every row of a large table at the engine's speed, for checks that must see every
//! row (`verify-ledger`).
//!
//! Through the `Any` driver each row crosses on its own (on SQLite, one channel message
//! from the driver's worker thread per row, converted to the generic row type), which cost
//! several times what the engines take to read the rows. So rows cross in bulk instead: on
//! PostgreSQL as a `COPY … TO STDOUT` on a native connection that imports the caller's
//! snapshot; on SQLite as JSON documents of 10,000 rows each, built by the engine, the next
//! one read while this process parses the last. Either way the caller gets each row's
//! columns as text, and reads exactly what its own transaction sees.

use std::borrow::Cow;

use futures_util::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{AnyConnection, Connection, Executor, Row};

/// Rows per JSON document on SQLite: large enough that the per-statement cost vanishes,
/// small enough that a document stays a megabyte or two.
const SQLITE_ROWS_PER_DOCUMENT: i64 = 10_000;

/// One bulk read: `columns` of `table`, optionally only rows whose text `column` lies in a
/// range.
#[derive(Debug, Clone, Copy)]
pub struct BulkQuery<'a> {
    /// The table (a name from this code, never from input).
    pub table: &'a str,
    /// Its columns, each read as text (integers in decimal, NULL as `None`).
    pub columns: &'a [&'a str],
    /// Only rows meeting this condition (SQL from this code), if any.
    pub filter: Option<&'a str>,
    /// Only rows in this range, if any.
    pub range: Option<TextRange<'a>>,
}

impl<'a> BulkQuery<'a> {
    /// Every row of `table`, as `columns`; narrow it with struct update syntax.
    pub fn new(table: &'a str, columns: &'a [&'a str]) -> Self {
        Self {
            table,
            columns,
            filter: None,
            range: None,
        }
    }
}

/// Rows whose text `column` is at least `low` and less than `high` (an end that is `None`
/// is open), compared as the database compares text.
#[derive(Debug, Clone, Copy)]
pub struct TextRange<'a> {
    /// The column compared (a name from this code).
    pub column: &'a str,
    /// Inclusive lower bound.
    pub low: Option<&'a str>,
    /// Exclusive upper bound.
    pub high: Option<&'a str>,
}

/// Reads tables in bulk within the snapshot of one read transaction.
#[derive(Debug)]
pub enum BulkReader {
    /// Reads through the transaction's own connection.
    Sqlite,
    /// A native connection in a transaction that imported the caller's snapshot.
    Postgres(Box<PgConnection>),
}

impl BulkReader {
    /// A reader that sees what `snapshot` sees. `snapshot` must be a transaction begun with
    /// [`super::snapshot_begin`] that stays open while the reader is used; on PostgreSQL
    /// this exports its snapshot to a connection of the reader's own.
    pub async fn open(db: &super::Db, snapshot: &mut AnyConnection) -> Result<Self, sqlx::Error> {
        let Some(options) = &db.postgres_options else {
            return Ok(Self::Sqlite);
        };
        let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *snapshot)
            .await?;
        let mut conn = PgConnection::connect_with(options).await?;
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        conn.execute(&*format!("SET TRANSACTION SNAPSHOT {}", literal(&id)))
            .await?;
        Ok(Self::Postgres(Box::new(conn)))
    }

    /// Calls `each` with every row of `query` (its columns in order, as text), in no
    /// particular order. Stops at the first error `each` returns.
    pub async fn scan<F>(
        &mut self,
        snapshot: &mut AnyConnection,
        query: &BulkQuery<'_>,
        mut each: F,
    ) -> Result<u64, sqlx::Error>
    where
        F: FnMut(&[Option<&str>]) -> Result<(), sqlx::Error>,
    {
        match self {
            Self::Sqlite => scan_sqlite(snapshot, query, &mut each).await,
            Self::Postgres(conn) => scan_postgres(conn, query, &mut each).await,
        }
    }

    /// Ends the reader's own transaction and connection, if any.
    pub async fn close(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite => Ok(()),
            Self::Postgres(mut conn) => {
                conn.execute("COMMIT").await?;
                conn.close().await
            }
        }
    }
}

/// `text` as a PostgreSQL string literal (`COPY` takes no bound parameters): the escape
/// form, whose meaning does not depend on `standard_conforming_strings`.
fn literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A decoding error in a bulk read.
fn malformed(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("bulk read: {what}").into())
}

async fn scan_postgres(
    conn: &mut PgConnection,
    query: &BulkQuery<'_>,
    each: &mut impl FnMut(&[Option<&str>]) -> Result<(), sqlx::Error>,
) -> Result<u64, sqlx::Error> {
    let mut sql = format!(
        "COPY (SELECT {} FROM {}",
        query.columns.join(", "),
        query.table
    );
    let mut conditions: Vec<String> = query.filter.iter().map(|f| format!("({f})")).collect();
    if let Some(range) = &query.range {
        for (bound, op) in [(range.low, ">="), (range.high, "<")] {
            if let Some(bound) = bound {
                conditions.push(format!("{} {op} {}", range.column, literal(bound)));
            }
        }
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(") TO STDOUT");
    let mut stream = conn.copy_out_raw(&sql).await?;
    // Bytes of a row split across two chunks of the stream.
    let mut carry: Vec<u8> = Vec::new();
    let mut rows = 0_u64;
    let mut outcome = Ok(());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let mut data: &[u8] = chunk.as_ref();
        if !carry.is_empty() {
            let Some(end) = data.iter().position(|b| *b == b'\n') else {
                carry.extend_from_slice(data);
                continue;
            };
            carry.extend_from_slice(data.get(..=end).unwrap_or_default());
            data = data.get(end + 1..).unwrap_or_default();
            let line = std::mem::take(&mut carry);
            outcome = copy_row(&line, query.columns.len(), each);
            if outcome.is_err() {
                break;
            }
            rows += 1;
        }
        let complete = data
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |end| end + 1);
        let (lines, rest) = data.split_at(complete);
        for line in lines.split_inclusive(|b| *b == b'\n') {
            outcome = copy_row(line, query.columns.len(), each);
            if outcome.is_err() {
                break;
            }
            rows += 1;
        }
        if outcome.is_err() {
            break;
        }
        carry.extend_from_slice(rest);
    }
    // A stream dropped before its end leaves the connection to discard the rest; the
    // caller's error comes first either way.
    drop(stream);
    outcome?;
    if !carry.is_empty() {
        return Err(malformed("COPY ended inside a row"));
    }
    Ok(rows)
}

/// One row of `COPY`'s text format (a line ending in `\n`, fields separated by tabs, NULL
/// as `\N`, backslash escapes) handed to `each`.
fn copy_row(
    line: &[u8],
    columns: usize,
    each: &mut impl FnMut(&[Option<&str>]) -> Result<(), sqlx::Error>,
) -> Result<(), sqlx::Error> {
    /// Columns a row may have for the path that borrows every field.
    const BORROWED_FIELDS_MAX: usize = 16;
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| malformed("COPY row is not UTF-8"))?;
    // Most rows have no escape but NULL's and few columns: their fields are borrowed, with
    // no allocation. Any other row takes the general path below.
    let mut borrowed: [Option<&str>; BORROWED_FIELDS_MAX] = [None; BORROWED_FIELDS_MAX];
    let mut width = 0;
    let mut plain = true;
    for field in line.split('\t') {
        match borrowed.get_mut(width) {
            Some(slot) if field == "\\N" || !field.contains('\\') => {
                *slot = (field != "\\N").then_some(field);
            }
            _ => {
                plain = false;
                break;
            }
        }
        width += 1;
    }
    if plain {
        if width != columns {
            return Err(malformed("COPY row has the wrong number of fields"));
        }
        return each(borrowed.get(..width).unwrap_or_default());
    }
    let fields: Vec<Option<Cow<'_, str>>> = line.split('\t').map(copy_field).collect();
    if fields.len() != columns {
        return Err(malformed("COPY row has the wrong number of fields"));
    }
    let fields: Vec<Option<&str>> = fields.iter().map(|field| field.as_deref()).collect();
    each(&fields)
}

/// One field of `COPY`'s text format.
fn copy_field(field: &str) -> Option<Cow<'_, str>> {
    if field == "\\N" {
        return None;
    }
    if !field.contains('\\') {
        return Some(Cow::Borrowed(field));
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        // `COPY TO` writes only these escapes (and a backslash as two).
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some(Cow::Owned(out))
}

async fn scan_sqlite(
    conn: &mut AnyConnection,
    query: &BulkQuery<'_>,
    each: &mut impl FnMut(&[Option<&str>]) -> Result<(), sqlx::Error>,
) -> Result<u64, sqlx::Error> {
    // The inner query names each column (an expression, maybe) c0, c1, …
    let named: Vec<String> = (0..)
        .zip(query.columns)
        .map(|(i, column)| format!("{column} AS c{i}"))
        .collect();
    let fields: Vec<String> = (0..query.columns.len())
        .map(|i| format!("CAST(c{i} AS TEXT)"))
        .collect();
    let mut conditions = vec!["rowid > $1".to_owned()];
    conditions.extend(query.filter.iter().map(|f| format!("({f})")));
    let mut binds: Vec<&str> = Vec::new();
    if let Some(range) = &query.range {
        for (bound, op) in [(range.low, ">="), (range.high, "<")] {
            if let Some(bound) = bound {
                binds.push(bound);
                conditions.push(format!("{} {op} ${}", range.column, binds.len() + 2));
            }
        }
    }
    let sql = format!(
        "SELECT MAX(r) AS last_rowid, json_group_array(json_array({})) AS document FROM ( \
           SELECT rowid AS r, {} FROM {} NOT INDEXED WHERE {} ORDER BY rowid LIMIT $2)",
        fields.join(", "),
        named.join(", "),
        query.table,
        conditions.join(" AND ")
    );
    // `NOT INDEXED`: each document walks the table in rowid order from where the last one
    // stopped, whatever indexes a filter or range could use (through an index, every
    // document would sort what is left of the range).
    // Documents go from the reader to the parser through a one-slot channel, so that the
    // engine builds the next document while this process parses the last.
    let (send, mut receive) = tokio::sync::mpsc::channel::<String>(1);
    let read = async move {
        let mut after = i64::MIN;
        loop {
            let mut statement = sqlx::query(&sql).bind(after).bind(SQLITE_ROWS_PER_DOCUMENT);
            for bind in &binds {
                statement = statement.bind(*bind);
            }
            let row = statement.fetch_one(&mut *conn).await?;
            let Some(last) = row.try_get::<Option<i64>, _>("last_rowid")? else {
                return Ok::<(), sqlx::Error>(());
            };
            after = last;
            if send.send(row.try_get("document")?).await.is_err() {
                // The parser stopped on an error of its own.
                return Ok(());
            }
        }
    };
    let parse = async {
        let mut rows = 0_u64;
        while let Some(document) = receive.recv().await {
            rows += parse_document(&document, query.columns.len(), each)?;
            tokio::task::yield_now().await;
        }
        Ok::<u64, sqlx::Error>(rows)
    };
    let (read, parsed) = tokio::join!(read, parse);
    let rows = parsed?;
    read?;
    Ok(rows)
}

/// A JSON string or null, borrowed from the document where it has no escapes.
struct Field<'a>(Option<Cow<'a, str>>);

impl<'de> serde::Deserialize<'de> for Field<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Field(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field(None))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// Hands each row of one SQLite document (an array of arrays of strings or nulls) to `each`.
fn parse_document(
    document: &str,
    columns: usize,
    each: &mut impl FnMut(&[Option<&str>]) -> Result<(), sqlx::Error>,
) -> Result<u64, sqlx::Error> {
    let rows: Vec<Vec<Field<'_>>> =
        serde_json::from_str(document).map_err(|_| malformed("SQLite document is not rows"))?;
    for row in &rows {
        if row.len() != columns {
            return Err(malformed("SQLite row has the wrong number of fields"));
        }
        let fields: Vec<Option<&str>> = row.iter().map(|field| field.0.as_deref()).collect();
        each(&fields)?;
    }
    Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of_copy(data: &str, columns: usize) -> Vec<Vec<Option<String>>> {
        let mut rows = Vec::new();
        for line in data.as_bytes().split_inclusive(|b| *b == b'\n') {
            copy_row(line, columns, &mut |fields| {
                rows.push(fields.iter().map(|f| f.map(str::to_owned)).collect());
                Ok(())
            })
            .expect("row");
        }
        rows
    }

    #[test]
    fn copy_text_fields_unescape_and_null() {
        let rows = rows_of_copy("a\\tb\t\\N\t12\nx\\\\y\\nz\t\t-3\n", 3);
        assert_eq!(
            rows,
            vec![
                vec![Some("a\tb".to_owned()), None, Some("12".to_owned())],
                vec![
                    Some("x\\y\nz".to_owned()),
                    Some(String::new()),
                    Some("-3".to_owned())
                ],
            ]
        );
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal(r"a'b\c"), r"E'a''b\\c'");
    }

    #[test]
    fn copy_row_with_the_wrong_width_is_an_error() {
        let result = copy_row(b"a\tb\n", 3, &mut |_| Ok(()));
        assert!(result.is_err());
    }

    #[test]
    fn sqlite_documents_borrow_plain_strings_and_decode_escapes() {
        let mut seen = Vec::new();
        let count = parse_document(
            r#"[["a","b\"c",null],["\u0009","",null]]"#,
            3,
            &mut |fields| {
                seen.push(
                    fields
                        .iter()
                        .map(|f| f.map(str::to_owned))
                        .collect::<Vec<_>>(),
                );
                Ok(())
            },
        )
        .expect("document");
        assert_eq!(count, 2);
        assert_eq!(seen[1][0].as_deref(), Some("\t"));
        assert_eq!(seen[0][1].as_deref(), Some("b\"c"));
        assert!(parse_document(r#"[["a"]]"#, 2, &mut |_| Ok(())).is_err());
        assert!(parse_document("not json", 1, &mut |_| Ok(())).is_err());
    }
}
