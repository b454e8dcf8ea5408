//! A thin, backend-neutral layer over sqlx: a statement is SQL text plus a
//! list of [`Arg`]s, run on PostgreSQL or SQLite by the same code.
//!
//! Both backends accept `$N` placeholders, `RETURNING`, `ON CONFLICT` and
//! `UPDATE … FROM (VALUES …)`, so almost every statement is written once.
//! Where they differ, [`Dialect`] says how.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, PgConnection, SqliteConnection};
use uuid::Uuid;

/// A bound value. Integers are always `i64` (`BIGINT` on PostgreSQL).
#[derive(Debug, Clone)]
pub enum Arg {
    Uuid(Uuid),
    Text(Option<String>),
    Int(Option<i64>),
    Time(Option<DateTime<Utc>>),
    Json(Option<serde_json::Value>),
}

impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Self {
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

/// SQL text and its arguments, numbered `$1…` in push order.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Appends an argument and returns its placeholder (`$N`).
    pub fn arg(&mut self, value: impl Into<Arg>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    /// Appends an argument whose placeholder the text already names.
    pub fn bind(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends `(v, …), (v, …)`: one tuple of placeholders per row.
    pub fn push_values<R>(
        &mut self,
        rows: impl IntoIterator<Item = R>,
        row: impl Fn(&mut Sql, R) -> Vec<String>,
    ) {
        let mut first = true;
        for r in rows {
            let placeholders = row(self, r).join(", ");
            self.text.push_str(if first { "(" } else { ", (" });
            self.text.push_str(&placeholders);
            self.text.push(')');
            first = false;
        }
    }

    /// Appends `$a, $b, …` for a list, for use inside `IN (…)`.
    pub fn push_list<T: Into<Arg>>(&mut self, items: impl IntoIterator<Item = T>) {
        let placeholders: Vec<String> = items.into_iter().map(|i| self.arg(i)).collect();
        self.text.push_str(&placeholders.join(", "));
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

/// What differs between the two SQL dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// Row locking for claims. SQLite has none and needs none: its write
    /// transactions are `BEGIN IMMEDIATE`, so they run one at a time.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }
}

/// A row type both drivers can decode (`#[derive(sqlx::FromRow)]` gives it).
pub trait Row: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}

impl<T> Row for T where T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{}

/// A connection (or transaction) of either backend.
pub enum Conn<'a> {
    Postgres(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for a in $args {
            q = match a {
                Arg::Uuid(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Time(v) => q.bind(v),
                Arg::Json(v) => q.bind(v.map(sqlx::types::Json)),
            };
        }
        q
    }};
}

impl Conn<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs a statement; returns the number of rows it touched.
    pub async fn execute(&mut self, sql: Sql) -> sqlx::Result<u64> {
        match self {
            Conn::Postgres(c) => Ok(bind_all!(
                sqlx::query(sqlx::AssertSqlSafe(sql.text)),
                sql.args
            )
            .execute(&mut **c)
            .await?
            .rows_affected()),
            Conn::Sqlite(c) => {
                let sql = sql.into_positional();
                Ok(
                    bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args)
                        .execute(&mut **c)
                        .await?
                        .rows_affected(),
                )
            }
        }
    }

    pub async fn fetch_all<T: Row>(&mut self, sql: Sql) -> sqlx::Result<Vec<T>> {
        match self {
            Conn::Postgres(c) => {
                bind_all!(
                    sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql.text)),
                    sql.args
                )
                .fetch_all(&mut **c)
                .await
            }
            Conn::Sqlite(c) => {
                let sql = sql.into_positional();
                bind_all!(
                    sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql.text)),
                    sql.args
                )
                .fetch_all(&mut **c)
                .await
            }
        }
    }

    pub async fn fetch_optional<T: Row>(&mut self, sql: Sql) -> sqlx::Result<Option<T>> {
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
}
