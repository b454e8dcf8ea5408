use std::collections::HashMap;
use std::process::ExitCode;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::{context, io, Result};

/// Where the contract's variables are read: the process environment, or a
/// fixed set (tests).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: Option<HashMap<String, String>>,
}

impl Env {
    /// The process environment.
    pub fn process() -> Env {
        Env { vars: None }
    }

    /// A fixed environment of these variables only.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }
}

/// The task's input from the input document (docs/tasks.md): a field the
/// task's `inputs:` mapping names takes what it points at; otherwise, by
/// the default rule, a field named after an upstream task takes that task's
/// output (a list, by index, for a fanned-out task); a field named `item`
/// takes the foreach item; any other field comes from the run's params.
/// Field names are those of the serialized form (`#[serde(rename)]`
/// counts). The error names the path of the field that does not fit.
pub fn build_input<I: DeserializeOwned + JsonSchema>(doc: &Value) -> Result<I, String> {
    let empty = Map::new();
    let section = |name: &str| doc.get(name).and_then(Value::as_object).unwrap_or(&empty);
    let (upstream, params) = (section("upstream"), section("params"));
    let item = doc.get("item");
    let schema = schemars::schema_for!(I);
    let fields: Vec<String> = match schema.get("properties").and_then(Value::as_object) {
        Some(props) => props.keys().cloned().collect(),
        // Not a struct with named fields: offer everything, upstream first.
        None => params
            .keys()
            .chain(upstream.keys())
            .cloned()
            .chain(item.map(|_| "item".to_owned()))
            .collect(),
    };
    let mapping = section("inputs");
    let mut data = Map::new();
    for name in fields {
        let value = if let Some(source) = mapping.get(&name) {
            match source.as_str().and_then(|s| resolve_source(doc, s)) {
                Some(v) => v,
                None => continue,
            }
        } else if let Some(v) = upstream.get(&name) {
            v
        } else if let (Some(v), "item") = (item, name.as_str()) {
            v
        } else if let Some(v) = params.get(&name) {
            v
        } else {
            continue;
        };
        data.insert(name, value.clone());
    }
    serde_path_to_error::deserialize(Value::Object(data)).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("invalid input: {}", e.inner())
        } else {
            format!("invalid input: {path}: {}", e.inner())
        }
    })
}

/// The value an `inputs:` entry names (docs/tasks.md): `params.NAME`,
/// `item[.path]`, or an upstream task (the longest name that matches) with
/// an optional path into its output; `None` where the path leads nowhere.
/// Path steps are keys, or indexes into arrays.
fn resolve_source<'a>(doc: &'a Value, source: &str) -> Option<&'a Value> {
    let (root, rest) = if let Some(name) = source.strip_prefix("params.") {
        (doc.get("params")?, name)
    } else if let Some(rest) = source.strip_prefix("item") {
        if !(rest.is_empty() || rest.starts_with('.')) {
            return None;
        }
        (doc.get("item")?, rest)
    } else {
        let upstream = doc.get("upstream")?.as_object()?;
        let parent = upstream
            .keys()
            .filter(|p| source == p.as_str() || source.starts_with(&format!("{p}.")))
            .max_by_key(|p| p.len())?;
        (&upstream[parent], &source[parent.len()..])
    };
    rest.split('.')
        .filter(|s| !s.is_empty())
        .try_fold(root, |v, step| match v {
            Value::Object(m) => m.get(step),
            Value::Array(a) => a.get(step.parse::<usize>().ok()?),
            _ => None,
        })
}

/// The JSON Schema of a task's input and output: `{"input": …, "output": …}`.
pub fn schema<I: JsonSchema, O: JsonSchema>() -> Value {
    json!({
        "input": schemars::schema_for!(I),
        "output": schemars::schema_for!(O),
    })
}

/// What `#[ork::task]`'s `main` does: `--ork-schema` prints the schema;
/// otherwise [`run_with`] the process environment.
pub fn run<I, O, F>(task: F) -> ExitCode
where
    I: DeserializeOwned + JsonSchema,
    O: Serialize + JsonSchema,
    F: FnOnce(I) -> Result<O>,
{
    if std::env::args().skip(1).any(|a| a == "--ork-schema") {
        println!("{:#}", schema::<I, O>());
        return ExitCode::SUCCESS;
    }
    match run_with(&Env::process(), task) {
        0 => ExitCode::SUCCESS,
        code => ExitCode::from(u8::try_from(code).unwrap_or(1)),
    }
}

/// Runs a task under the worker contract of `env`: reads the input, calls
/// the task, writes its output (or its error, at `$ORK_ERROR`); returns the
/// exit code, 0 or 1.
pub fn run_with<I, O, F>(env: &Env, task: F) -> i32
where
    I: DeserializeOwned + JsonSchema,
    O: Serialize,
    F: FnOnce(I) -> Result<O>,
{
    let doc = match io::read_input(env) {
        Ok(doc) => doc,
        Err(e) => return failed(env, &format!("cannot read the task input: {e}"), true),
    };
    context::set_input(&doc);
    let input = match build_input::<I>(&doc) {
        Ok(i) => i,
        Err(e) => return failed(env, &e, false),
    };
    let output = match task(input) {
        Ok(o) => o,
        Err(e) => return failed(env, e.message(), e.is_retryable()),
    };
    let value = match serde_json::to_value(output) {
        Ok(v) => v,
        Err(e) => return failed(env, &format!("cannot serialize the output: {e}"), false),
    };
    match io::write_output(env, &value) {
        Ok(()) => 0,
        Err(e) => failed(env, &e, true),
    }
}

fn failed(env: &Env, message: &str, retryable: bool) -> i32 {
    eprintln!(
        "error: {message}{}",
        if retryable { "" } else { " (not retryable)" }
    );
    if let Err(e) = io::write_error(env, message, retryable) {
        eprintln!("error: {e}");
    }
    1
}
