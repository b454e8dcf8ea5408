//! Ork's three handlers (`trigger`, `advance`, `on-task-complete`) as
//! functions of a decoded request, served two ways: over HTTP by axum
//! (`ork serve`, [`http`]) and as AWS Lambda functions (`functions/`,
//! [`lambda`]). Each call loads what it needs from the database, does its
//! work in the engine, and returns: nothing is kept between calls.

pub mod advancer;
pub mod config;
pub mod handlers;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod oidc;
pub mod operations;
pub mod payload_store;
pub mod reports;
pub mod sweeper;
pub mod ui;
pub mod waker;

pub use handlers::{Handlers, Reply};
