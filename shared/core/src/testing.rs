//! Test support: a fresh database per test on each backend, so that one test
//! body runs against SQLite (a real file) and PostgreSQL (a real server).
//! Compiled for ork-core's own tests and, behind the `testing` feature, for
//! the `ork-tests` crate, which re-exports it: the logic lives here only.
//!
//! PostgreSQL: each test gets `CREATE DATABASE ork_test_<uuid v7> TEMPLATE
//! ork_test_template_<schema hash>`. The template is migrated once per schema
//! version (under an advisory lock, so concurrent test binaries wait for the
//! first); the test's database is dropped (`WITH (FORCE)`) when its
//! [`TestDb`] is, even when the test panics. Databases that earlier runs
//! left behind (a killed process) are dropped by the first test of a binary
//! once they are [`STALE_AFTER`] old, an age the v7 uuid in the name tells.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;
use uuid::Uuid;

use crate::store::{Store, StoreOptions, PG_MIGRATIONS};

/// How old a test database must be for a later run to take it for a leftover.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// The prefix of every test database (templates included).
pub const PREFIX: &str = "ork_test_";

/// Serializes template creation across processes (any fixed key will do).
const TEMPLATE_LOCK: i64 = 0x6f72_6b5f_7465_6d70; // "ork_temp"

/// A store on a fresh database, and what removes that database after the test.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _cleanup: Cleanup,
}

enum Cleanup {
    /// The SQLite file's directory, deleted on drop.
    Sqlite {
        _dir: TempDir,
    },
    Postgres {
        _db: DropDatabase,
    },
}

/// The PostgreSQL server to create test databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A store on a new SQLite file in a temporary directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("ork.db").display());
    let store = Store::connect_with(&url, &options())
        .await
        .expect("open sqlite");
    TestDb {
        store,
        url,
        _cleanup: Cleanup::Sqlite { _dir: dir },
    }
}

/// A store on a new database, copied from the migrated template, on the
/// server named by `DATABASE_URL`. Dropped with the [`TestDb`].
pub async fn postgres() -> TestDb {
    let admin = postgres_admin_url();
    let template = template(&admin).await;
    let name = DbName::new(format!("{PREFIX}{}", Uuid::now_v7().simple()));
    let mut conn = admin_connection(&admin).await;
    // Two sessions copying one template at the same instant may collide
    // ("source database is being accessed by other users"); try again.
    let mut tries = 0;
    loop {
        match ddl(
            &mut conn,
            "CREATE DATABASE {} TEMPLATE {}",
            &[&name, &template],
        )
        .await
        {
            Ok(()) => break,
            Err(e) if tries < 20 => {
                tries += 1;
                tracing::debug!(error = %e, "create test database, retrying");
                tokio::time::sleep(Duration::from_millis(50 * tries)).await;
            }
            Err(e) => panic!("create database {}: {e}", name.0),
        }
    }
    let _ = conn.close().await;
    let cleanup = DropDatabase {
        admin: admin.clone(),
        name: name.clone(),
    };
    let url = database_url(&admin, &name);
    let store = Store::connect_with(&url, &options())
        .await
        .expect("open postgres");
    TestDb {
        store,
        url,
        _cleanup: Cleanup::Postgres { _db: cleanup },
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        max_connections: 40,
        migrate: true,
        ..StoreOptions::default()
    }
}

/// Drops its database when dropped. `Drop` is synchronous and may run on a
/// runtime's thread, so the drop runs on a thread of its own with its own
/// runtime, joined before returning.
struct DropDatabase {
    admin: String,
    name: DbName,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut conn = admin_connection(&admin).await;
                let r = ddl(
                    &mut conn,
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    &[&name],
                )
                .await;
                let _ = conn.close().await;
                r
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name.0),
            Err(_) => eprintln!("could not drop test database {}", self.name.0),
        }
    }
}

/// The template of the current schema, created on first use.
async fn template(admin: &str) -> DbName {
    static TEMPLATE: tokio::sync::OnceCell<DbName> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let template = DbName::new(format!("{PREFIX}template_{}", schema_hash()));
            let mut conn = admin_connection(admin).await;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(TEMPLATE_LOCK)
                .execute(&mut conn)
                .await
                .expect("lock the template");
            drop_stale(&mut conn).await;
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&template.0)
                    .fetch_optional(&mut conn)
                    .await
                    .expect("look the template up");
            if exists.is_none() {
                // Migrated under another name and renamed when complete, so
                // a run killed halfway leaves no template that looks ready.
                let wip = DbName::new(format!("{}_wip", template.0));
                let create = async {
                    ddl(
                        &mut conn,
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        &[&wip],
                    )
                    .await?;
                    ddl(&mut conn, "CREATE DATABASE {}", &[&wip]).await?;
                    let store = Store::connect_with(&database_url(admin, &wip), &options())
                        .await
                        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                    store.close().await;
                    ddl(
                        &mut conn,
                        "ALTER DATABASE {} RENAME TO {}",
                        &[&wip, &template],
                    )
                    .await
                };
                create.await.expect("create the template database");
            }
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(TEMPLATE_LOCK)
                .execute(&mut conn)
                .await
                .expect("unlock the template");
            let _ = conn.close().await;
            template
        })
        .await
        .clone()
}

/// Drops test databases older than [`STALE_AFTER`] (never templates).
async fn drop_stale(conn: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'ork\\_test\\_%'")
            .fetch_all(&mut *conn)
            .await
            .expect("list test databases");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    for name in names {
        let Some(created) = name
            .strip_prefix(PREFIX)
            .and_then(|id| Uuid::try_parse(id).ok())
            .and_then(|id| id.get_timestamp())
        else {
            continue;
        };
        let created = Duration::from_secs(created.to_unix().0);
        if now.saturating_sub(created) > STALE_AFTER {
            let name = DbName::new(name);
            if let Err(e) = ddl(conn, "DROP DATABASE IF EXISTS {} WITH (FORCE)", &[&name]).await {
                eprintln!("could not drop stale test database {}: {e}", name.0);
            }
        }
    }
}

/// The migrations' versions and checksums, hashed: a new or changed
/// migration gets a new template.
fn schema_hash() -> String {
    let mut h = Sha256::new();
    for m in PG_MIGRATIONS.iter() {
        h.update(m.version.to_le_bytes());
        h.update(&m.checksum);
    }
    hex::encode(&h.finalize()[..8])
}

async fn admin_connection(admin: &str) -> PgConnection {
    PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for these tests: {e}"))
}

/// The admin URL with its database replaced by `name`.
fn database_url(admin: &str, name: &DbName) -> String {
    let (path, query) = match admin.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (admin, String::new()),
    };
    let base = path.rsplit_once('/').map(|(b, _)| b).unwrap_or(path);
    format!("{base}/{}{query}", name.0)
}

/// A database name made only of `[a-z0-9_]`, so that it can be written into
/// DDL (identifiers cannot be bound as parameters).
#[derive(Debug, Clone)]
struct DbName(String);

impl DbName {
    fn new(name: String) -> DbName {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "not a plain database name: {name:?}"
        );
        DbName(name)
    }
}

/// Runs a DDL statement naming databases: each `{}` of the constant
/// `statement` is replaced by the next name. This is the one place test
/// support hands sqlx a built string, and it is safe: the text is a
/// `&'static str` and the names are [`DbName`]s, checked to be plain.
async fn ddl(
    conn: &mut PgConnection,
    statement: &'static str,
    names: &[&DbName],
) -> sqlx::Result<()> {
    let mut names = names.iter();
    let mut text = String::new();
    let mut parts = statement.split("{}");
    text.push_str(parts.next().unwrap_or_default());
    for part in parts {
        text.push_str(&names.next().expect("a name per {}").0);
        text.push_str(part);
    }
    sqlx::query(sqlx::AssertSqlSafe(text))
        .execute(conn)
        .await
        .map(drop)
}

/// Runs each named test body (an `async fn(TestDb)`) on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::testing::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::testing::postgres().await).await
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_the_database_and_keeps_the_query() {
        let name = DbName::new("ork_test_x".into());
        assert_eq!(
            database_url("postgres://u@h:5432/postgres?sslmode=disable", &name),
            "postgres://u@h:5432/ork_test_x?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://u@h/postgres", &name),
            "postgres://u@h/ork_test_x"
        );
    }

    #[test]
    #[should_panic(expected = "not a plain database name")]
    fn database_names_must_be_plain() {
        DbName::new("x; DROP DATABASE postgres".into());
    }
}
