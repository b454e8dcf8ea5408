//! A thin, backend-neutral layer over sqlx: a statement is SQL text plus a
//! list of [`Arg`]s, run on PostgreSQL or SQLite by the same code.
//!
//! Both backends accept `$N` placeholders, `RETURNING`, `ON CONFLICT` and
//! `UPDATE … FROM (VALUES …)`, so every statement is written once (the
//! constants of [`super::statements`]). Where they differ, [`Dialect`] says
//! how.
//!
//! A [`Sql`] cannot be made from a runtime string: its text is `&'static str`
//! fragments (statement constants, [`Dialect`] clauses) and the placeholders
//! it numbers itself. Values only ever travel as bound arguments.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, PgConnection, SqliteConnection};
use uuid::Uuid;

/// A bound value. Integers are always `i64` (`BIGINT` on PostgreSQL).
///
/// The `…s` variants are arrays, PostgreSQL's only: a batch of rows bound
/// as one array per column (`unnest($1::uuid[], …)`) is one short
/// statement, parsed and planned once per connection, where a `VALUES`
/// list of a thousand rows is eight thousand parameters, a statement text
/// per batch size, and planned at every execution.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    Int(Option<i64>),
    Time(Option<DateTime<Utc>>),
    Json(Option<serde_json::Value>),
    Bool(Option<bool>),
    Float(Option<f64>),
    Uuids(Vec<Option<Uuid>>),
    Texts(Vec<Option<String>>),
    Ints(Vec<Option<i64>>),
    Times(Vec<Option<DateTime<Utc>>>),
    Jsons(Vec<Option<serde_json::Value>>),
}

/// A column of a batch, bound as one PostgreSQL array ([`Arg`]).
pub(crate) trait Column: Sized {
    fn column(values: Vec<Self>) -> Arg;
}

macro_rules! column {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl Column for Option<$t> {
            fn column(values: Vec<Self>) -> Arg {
                Arg::$variant(values)
            }
        }
    )*};
}

column!(Uuid => Uuids, String => Texts, i64 => Ints, DateTime<Utc> => Times, serde_json::Value => Jsons);

impl Arg {
    /// One column of a batch's rows, as an array.
    pub(crate) fn column<T: Column>(values: impl IntoIterator<Item = T>) -> Arg {
        T::column(values.into_iter().collect())
    }

    fn is_array(&self) -> bool {
        matches!(
            self,
            Arg::Uuids(_) | Arg::Texts(_) | Arg::Ints(_) | Arg::Times(_) | Arg::Jsons(_)
        )
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(Some(v))
    }
}

impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Float(Some(v))
    }
}

impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Self {
        Arg::Uuid(Some(v))
    }
}
impl From<Option<Uuid>> for Arg {
    fn from(v: Option<Uuid>) -> Self {
        Arg::Uuid(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Arg::Time(Some(v))
    }
}
impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Arg::Time(v)
    }
}
impl From<Option<serde_json::Value>> for Arg {
    fn from(v: Option<serde_json::Value>) -> Self {
        Arg::Json(v)
    }
}

/// The placeholder (`$N`) of an argument already appended to a [`Sql`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placeholder(usize);

/// SQL text and its arguments, numbered `$1…` in push order.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(text: &'static str) -> Self {
        Sql {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    /// Appends an argument and returns its placeholder, for [`Sql::push_values`]
    /// rows or to be written later with [`Sql::push_placeholder`].
    pub(crate) fn arg(&mut self, value: impl Into<Arg>) -> Placeholder {
        self.args.push(value.into());
        Placeholder(self.args.len())
    }

    /// Appends an argument whose placeholder the text already names.
    pub(crate) fn bind(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends an argument and writes its placeholder at the end of the text.
    pub(crate) fn push_arg(&mut self, value: impl Into<Arg>) -> &mut Self {
        let p = self.arg(value);
        self.push_placeholder(p)
    }

    /// Writes the placeholder of an argument appended before.
    pub(crate) fn push_placeholder(&mut self, p: Placeholder) -> &mut Self {
        self.text.push('$');
        self.text.push_str(&p.0.to_string());
        self
    }

    pub(crate) fn push(&mut self, text: &'static str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends `(v, …), (v, …)`: one tuple of placeholders per row.
    pub(crate) fn push_values<R>(
        &mut self,
        rows: impl IntoIterator<Item = R>,
        row: impl Fn(&mut Sql, R) -> Vec<Placeholder>,
    ) {
        let mut first = true;
        for r in rows {
            let placeholders = row(self, r);
            self.text.push_str(if first { "(" } else { ", (" });
            for (i, p) in placeholders.into_iter().enumerate() {
                if i > 0 {
                    self.text.push_str(", ");
                }
                self.push_placeholder(p);
            }
            self.text.push(')');
            first = false;
        }
    }

    /// Appends `$a, $b, …` for a list, for use inside `IN (…)`.
    pub(crate) fn push_list<T: Into<Arg>>(&mut self, items: impl IntoIterator<Item = T>) {
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.push_arg(item);
        }
    }
}

impl Sql {
    /// The same statement with anonymous `?` placeholders, arguments repeated
    /// and reordered to match. SQLite looks a `$N` name up by a linear scan
    /// for every parameter bound, which makes a statement with thousands of
    /// them quadratic; anonymous ones it binds directly.
    fn into_positional(self) -> Sql {
        let mut text = String::with_capacity(self.text.len());
        let mut args = Vec::with_capacity(self.args.len());
        let mut rest = self.text.as_str();
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            let digits = rest[at + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            match rest[at + 1..at + 1 + digits].parse::<usize>() {
                Ok(n) if (1..=self.args.len()).contains(&n) => {
                    text.push('?');
                    args.push(self.args[n - 1].clone());
                }
                _ => text.push_str(&rest[at..at + 1 + digits]),
            }
            rest = &rest[at + 1 + digits..];
        }
        text.push_str(rest);
        Sql { text, args }
    }
}

/// What differs between the two SQL dialects: row locking, and the
/// lookups of a run's rows by name that PostgreSQL must not plan as a scan
/// of the run (`statements.rs`, the `_PG` statements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// Row locking for claims: rows other claimers hold are skipped. SQLite
    /// has none and needs none: its write transactions are `BEGIN
    /// IMMEDIATE`, so they run one at a time.
    pub(crate) fn skip_locked(self, sql: &mut Sql) {
        if self == Dialect::Postgres {
            sql.push(" FOR UPDATE SKIP LOCKED");
        }
    }

    /// Locks the selected rows of one table of a join (`FOR UPDATE OF
    /// <table>`) until the transaction ends; on SQLite, as above, the write
    /// transaction already excludes every other writer.
    pub(crate) fn lock_rows_of(self, sql: &mut Sql, table: &'static str) {
        if self == Dialect::Postgres {
            sql.push(" FOR UPDATE OF ").push(table);
        }
    }
}

/// A row type both drivers can decode (`#[derive(sqlx::FromRow)]` gives it).
pub(crate) trait Row:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<T> Row for T where T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{}

/// A connection (or transaction) of either backend.
pub(crate) enum Conn<'a> {
    Postgres(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

/// Binds `$args` to `$query`; `$arrays` binds the array variants (only
/// PostgreSQL has arrays: [`statement`] refuses them for SQLite).
macro_rules! bind_all {
    ($query:expr, $args:expr, $arrays:ident) => {{
        let mut q = $query;
        for a in $args {
            q = match a {
                Arg::Uuid(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Time(v) => q.bind(v),
                Arg::Json(v) => q.bind(v.map(sqlx::types::Json)),
                Arg::Bool(v) => q.bind(v),
                Arg::Float(v) => q.bind(v),
                array => $arrays!(q, array),
            };
        }
        q
    }};
}

macro_rules! pg_arrays {
    ($q:ident, $array:expr) => {
        match $array {
            Arg::Uuids(v) => $q.bind(v),
            Arg::Texts(v) => $q.bind(v),
            Arg::Ints(v) => $q.bind(v),
            Arg::Times(v) => $q.bind(v),
            Arg::Jsons(v) => $q.bind(
                v.into_iter()
                    .map(|j| j.map(sqlx::types::Json))
                    .collect::<Vec<_>>(),
            ),
            _ => $q,
        }
    };
}

/// Never reached: [`statement`] refuses arrays for SQLite first.
macro_rules! no_arrays {
    ($q:ident, $array:expr) => {{
        drop($array);
        $q
    }};
}

/// The statement's text as sqlx takes it, in the backend's placeholder style.
///
/// This is the one place the store hands sqlx a non-literal string, and it
/// is safe: a [`Sql`]'s text is only ever `&'static str` fragments
/// ([`Sql::new`], [`Sql::push`], [`Dialect`]) and the `$N` / `?`
/// placeholders it writes itself; every value is a bound argument.
fn statement(sql: Sql, dialect: Dialect) -> sqlx::Result<(sqlx::AssertSqlSafe<String>, Vec<Arg>)> {
    let sql = match dialect {
        Dialect::Postgres => sql,
        Dialect::Sqlite if sql.args.iter().any(Arg::is_array) => {
            return Err(sqlx::Error::Protocol(
                "an array argument sent to SQLite, which has none".into(),
            ))
        }
        Dialect::Sqlite => sql.into_positional(),
    };
    Ok((sqlx::AssertSqlSafe(sql.text), sql.args))
}

impl Conn<'_> {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs a statement; returns the number of rows it touched.
    pub(crate) async fn execute(&mut self, sql: Sql) -> sqlx::Result<u64> {
        let (text, args) = statement(sql, self.dialect())?;
        Ok(match self {
            Conn::Postgres(c) => bind_all!(sqlx::query(text), args, pg_arrays)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Conn::Sqlite(c) => bind_all!(sqlx::query(text), args, no_arrays)
                .execute(&mut **c)
                .await?
                .rows_affected(),
        })
    }

    pub(crate) async fn fetch_all<T: Row>(&mut self, sql: Sql) -> sqlx::Result<Vec<T>> {
        let (text, args) = statement(sql, self.dialect())?;
        match self {
            Conn::Postgres(c) => {
                bind_all!(sqlx::query_as::<_, T>(text), args, pg_arrays)
                    .fetch_all(&mut **c)
                    .await
            }
            Conn::Sqlite(c) => {
                bind_all!(sqlx::query_as::<_, T>(text), args, no_arrays)
                    .fetch_all(&mut **c)
                    .await
            }
        }
    }

    /// [`Conn::fetch_all`], except that a row that fails to decode (a value
    /// stored before it was validated, say) is logged and skipped rather
    /// than failing the whole list: one bad row must not hide the others.
    pub(crate) async fn fetch_readable<T: Row>(&mut self, sql: Sql) -> sqlx::Result<Vec<T>> {
        let (text, args) = statement(sql, self.dialect())?;
        let rows: Vec<sqlx::Result<T>> = match self {
            Conn::Postgres(c) => bind_all!(sqlx::query(text), args, pg_arrays)
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(T::from_row)
                .collect(),
            Conn::Sqlite(c) => bind_all!(sqlx::query(text), args, no_arrays)
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(T::from_row)
                .collect(),
        };
        let mut readable = Vec::with_capacity(rows.len());
        for row in rows {
            match row {
                Ok(row) => readable.push(row),
                Err(e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_))) => {
                    tracing::error!(error = %e, "skipped a row that cannot be read back");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(readable)
    }

    pub(crate) async fn fetch_optional<T: Row>(&mut self, sql: Sql) -> sqlx::Result<Option<T>> {
        Ok(self.fetch_all(sql).await?.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_placeholders_repeat_and_reorder_arguments() {
        let sql = Sql::new("SELECT $2, $1, $2, '$x', $10")
            .bind(1i64)
            .bind("two")
            .into_positional();
        assert_eq!(sql.text, "SELECT ?, ?, ?, '$x', $10");
        let args: Vec<String> = sql.args.iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(
            args,
            [
                r#"Text(Some("two"))"#,
                "Int(Some(1))",
                r#"Text(Some("two"))"#
            ]
        );
    }

    #[test]
    fn generated_placeholders_number_arguments_in_push_order() {
        let mut sql = Sql::new("INSERT INTO t (a, b) VALUES ");
        let shared = sql.arg(7i64);
        sql.push_values(["x", "y"], |s, v| vec![shared, s.arg(v)]);
        sql.push(" WHERE c IN (");
        sql.push_list([1i64, 2]);
        sql.push(") AND d = ").push_arg(3i64);
        assert_eq!(
            sql.text,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($1, $3) WHERE c IN ($4, $5) AND d = $6"
        );
        assert_eq!(sql.args.len(), 6);
    }

    #[test]
    fn only_postgres_takes_array_arguments() {
        let sql = Sql::new("SELECT * FROM unnest($1::bigint[])").bind(Arg::column([Some(1i64)]));
        assert!(statement(sql.clone(), Dialect::Postgres).is_ok());
        assert!(statement(sql, Dialect::Sqlite).is_err());
    }

    #[test]
    fn only_postgres_locks_rows() {
        let mut pg = Sql::new("SELECT 1");
        Dialect::Postgres.lock_rows_of(&mut pg, "w");
        Dialect::Postgres.skip_locked(&mut pg);
        assert_eq!(pg.text, "SELECT 1 FOR UPDATE OF w FOR UPDATE SKIP LOCKED");
        let mut lite = Sql::new("SELECT 1");
        Dialect::Sqlite.lock_rows_of(&mut lite, "w");
        Dialect::Sqlite.skip_locked(&mut lite);
        assert_eq!(lite.text, "SELECT 1");
    }
}
