//! Test harness: a fresh database per test on each backend (SQLite in a
//! temporary directory, PostgreSQL copied from a migrated template and
//! dropped after the test). The logic is `ork_core::testing`'s, re-exported
//! here with the engine helpers the integration tests share.

use std::sync::Arc;

use ork_core::engine::{Engine, EngineConfig};
use ork_core::executor::{Executor, Executors, NoopExecutor};
use ork_core::spec::{self, ExecutorKind, WorkflowSpec};
use ork_core::store::Store;

pub use ork_core::testing::{postgres, postgres_admin_url, sqlite, TestDb};

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
