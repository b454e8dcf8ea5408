//! Ork's core: the workflow spec and its DAG, the state store (PostgreSQL or
//! SQLite), the engine that claims and completes tasks, and the executors.
//!
//! Nothing here knows about HTTP, Lambda or the command line: those are thin
//! layers in `cli/` and `functions/` over [`engine::Engine`].

pub mod dag;
pub mod engine;
mod error;
pub mod executor;
pub mod model;
pub mod spec;
pub mod store;
pub mod token;
pub mod worker;

pub use error::Error;
