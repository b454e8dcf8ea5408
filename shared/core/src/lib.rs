//! Ork's core: the workflow spec and its DAG, the state store (PostgreSQL or
//! SQLite), the engine that claims and completes tasks, and the [`executor`]
//! interface (with the `noop` and `mock` executors, which need nothing).
//!
//! Nothing here opens a network connection other than to the database, and
//! nothing knows about HTTP, Lambda or the command line: executors live in
//! `ork-executors`, the handlers in `ork-api`, over [`engine::Engine`].

pub mod contract;
pub mod cost;
pub mod dag;
pub mod engine;
mod error;
pub mod executor;
pub mod limits;
pub mod model;
pub mod payload;
pub mod retry;
pub mod spec;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod token;

pub use error::Error;
