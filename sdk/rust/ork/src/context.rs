use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::run::Env;

static INPUT: OnceLock<Value> = OnceLock::new();

/// Remembers the attempt's input document for [`context`].
pub(crate) fn set_input(doc: &Value) {
    let _ = INPUT.set(doc.clone());
}

/// Which attempt of which task this is, and the run's params.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub run_id: String,
    pub workflow: String,
    pub task: String,
    /// This instance of a fanned-out task, `0 ≤ index < count`.
    pub index: u32,
    pub count: u32,
    /// From 1.
    pub attempt: u32,
    pub params: Map<String, Value>,
}

impl Context {
    /// The context from an environment (and the input document, for the
    /// params); empty fields, index 0 of 1 and attempt 1 where unset.
    pub fn from_env(env: &Env, input: Option<&Value>) -> Context {
        let num = |name: &str, default: u32| {
            env.get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Context {
            run_id: env.get("ORK_RUN_ID").unwrap_or_default(),
            workflow: env.get("ORK_WORKFLOW").unwrap_or_default(),
            task: env.get("ORK_TASK").unwrap_or_default(),
            index: num("ORK_TASK_INDEX", 0),
            count: num("ORK_TASK_COUNT", 1),
            attempt: num("ORK_ATTEMPT", 1),
            params: input
                .and_then(|d| d.get("params"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// The running attempt's context (from `ORK_RUN_ID`, `ORK_WORKFLOW`,
/// `ORK_TASK`, `ORK_TASK_INDEX`, `ORK_TASK_COUNT`, `ORK_ATTEMPT` and the
/// input's params).
pub fn context() -> Context {
    let env = Env::process();
    let doc = INPUT.get_or_init(|| crate::io::read_input(&env).unwrap_or(Value::Null));
    Context::from_env(&env, Some(doc))
}
