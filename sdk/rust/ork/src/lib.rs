//! Ork's Rust task SDK.
//!
//! ```no_run
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Input { day: String }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Output { rows: usize }
//!
//! #[ork::task]
//! fn main(input: Input) -> ork::Result<Output> {
//!     Ok(Output { rows: input.day.len() })
//! }
//! ```
//!
//! `Input` is built from the run's params, the upstream outputs and the
//! foreach item by the rule of docs/tasks.md (a field named after an
//! upstream task takes its output, `item` the item, any other field a
//! param); the output is written to `$ORK_OUTPUT`. `Err(ork::Error::retry(..))`
//! is an ordinary failure, `Err(ork::Error::fail(..))` one that is not
//! retried; a `?` on any other error is retryable. `--ork-schema` prints
//! the input and output JSON Schema.

extern crate self as ork;

mod context;
mod error;
pub mod io;
mod run;

pub use context::{context, Context};
pub use error::{Error, Result};
pub use ork_macros::task;
pub use run::{build_input, run, run_with, schema, Env};

// A task crate depends on `serde` (derive) and `schemars` 1.x (derive) for
// its models; these are the versions the SDK uses.
pub use schemars;
pub use serde;
pub use serde_json;
