//! Test harness: a fresh database per test on each backend, so that one
//! test body runs against SQLite (a real file) and PostgreSQL (a real server).

use std::sync::Arc;

use ork_core::engine::{Engine, EngineConfig};
use ork_core::executor::{Executor, Executors, NoopExecutor};
use ork_core::spec::{self, ExecutorKind, WorkflowSpec};
use ork_core::store::{Store, StoreOptions};
use tempfile::TempDir;

/// A store and whatever must live as long as it (the SQLite file's directory).
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _dir: Option<TempDir>,
}

/// The PostgreSQL server to create test databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("ork.db").display());
    let store = Store::connect_with(&url, &options())
        .await
        .expect("open sqlite");
    TestDb {
        store,
        url,
        _dir: Some(dir),
    }
}

/// A new, empty database on the server named by `DATABASE_URL`.
pub async fn postgres() -> TestDb {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = format!("ork_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for these tests: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let (base, query) = match admin.split_once('?') {
        Some((_, q)) => (base, format!("?{q}")),
        None => (base, String::new()),
    };
    let url = format!("{base}/{name}{query}");
    let store = Store::connect_with(&url, &options())
        .await
        .expect("open postgres");
    TestDb {
        store,
        url,
        _dir: None,
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        max_connections: 40,
        migrate: true,
        ..StoreOptions::default()
    }
}

pub fn engine_with(store: Store, executors: Executors) -> Engine {
    Engine::new(store, executors, EngineConfig::default())
}

pub fn noop_engine(store: Store) -> Engine {
    engine_with(
        store,
        Executors::new().with(ExecutorKind::Noop, Arc::new(NoopExecutor)),
    )
}

pub fn with_executor(store: Store, executor: Arc<dyn Executor>) -> Engine {
    engine_with(store, Executors::new().with(ExecutorKind::Noop, executor))
}

pub fn parse(yaml: &str) -> WorkflowSpec {
    spec::parse_str(yaml, None).unwrap_or_else(|e| panic!("test spec is invalid: {e}"))
}

/// Runs each named test body (an `async fn(TestDb)`) on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::db::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::db::postgres().await).await
                }
            )*
        }
    };
}
