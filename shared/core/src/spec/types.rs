//! The type check along the DAG's edges (docs/type_schemas.md): each field
//! of a task's input schema against what feeds it, the output schema of a
//! parent (by name or through `inputs:`) or a declared param.
//!
//! Only what both sides state is compared: a task without an input schema,
//! or fed by a parent without an output schema, is not checked. Types are
//! JSON Schema's `type`s (an `anyOf`/`oneOf` is the union of its
//! branches'), objects by their required properties, arrays by their items;
//! `$ref`s are resolved within their own document.

use std::collections::BTreeSet;

use serde_json::Value;

use super::validate::line_of;
use super::{InputSource, SpecError, TaskSchema, TaskSpec, WorkflowSpec};

/// How deep two schemas are compared, and how many `$ref`s are followed in
/// a row; a recursive model stops here instead of looping.
const MAX_DEPTH: usize = 32;

/// Checks every edge whose two ends have schemas (and that no schema is
/// larger than [`crate::limits::MAX_SCHEMA_BYTES`]). The first mismatch is
/// reported with the line of the task (of its `inputs:` entry, or of the
/// `depends_on` entry of the parent) in `src`.
pub fn check_types<'a>(spec: &'a WorkflowSpec, src: &str) -> Result<(), SpecError> {
    for (name, task) in &spec.tasks {
        super::validate::check_schema_size(name, task)
            .map_err(|msg| SpecError::new(msg).at(line_of(src, name, &["schema"])))?;
    }
    for (name, task) in &spec.tasks {
        let Some(input) = schema_of(task, Side::Input) else {
            continue;
        };
        let obj = resolve(input, input);
        let Some(props) = obj.get("properties").and_then(Value::as_object) else {
            continue;
        };
        let required = required(obj);
        for (field, want) in props {
            let (source, mapped) = match task.inputs.get(field) {
                Some(s) => (task.input_source(s), true),
                None if task.depends_on.contains(field) => {
                    (Some(InputSource::Upstream(field, Vec::new())), false)
                }
                None if field == "item" && task.foreach.is_some() => {
                    (Some(InputSource::Item(Vec::new())), false)
                }
                None => (Some(InputSource::Param(field)), false),
            };
            let err = |within: &[&str], msg: String| {
                Err(SpecError::new(msg).at(line_of(src, name, within)))
            };
            let within_of = |parent: &'a str| -> [&'a str; 2] {
                if mapped {
                    ["inputs", field.as_str()]
                } else {
                    ["depends_on", parent]
                }
            };
            match source {
                Some(InputSource::Upstream(parent, path)) => {
                    let p = &spec.tasks[parent];
                    let Some(out) = schema_of(p, Side::Output) else {
                        continue;
                    };
                    let Some(have) = walk(out, out, &path) else {
                        let msg = format!(
                            "task {name:?}: input field {field:?} takes {}, which the output schema of task {parent:?} does not have",
                            task.inputs[field]
                        );
                        return err(&within_of(parent), msg);
                    };
                    // A fanned-out parent gives the list of its outputs.
                    let list;
                    let have = if p.task_count > 1 || p.foreach.is_some() {
                        list = serde_json::json!({"type": "array", "items": have});
                        &list
                    } else {
                        have
                    };
                    if let Some(why) = compare(want, input, have, out, field, 0) {
                        let msg = format!(
                            "task {name:?}: input field {field:?} does not fit the output of task {parent:?}: {why}"
                        );
                        return err(&within_of(parent), msg);
                    }
                }
                Some(InputSource::Param(param)) => match spec.params.get(param) {
                    Some(default) if !default.is_null() => {
                        if let Some(why) =
                            compare(want, input, &example(default), &Value::Null, field, 0)
                        {
                            let msg = format!(
                                "task {name:?}: input field {field:?} does not fit the default of param {param:?}: {why}"
                            );
                            return err(&["inputs", field.as_str()], msg);
                        }
                    }
                    Some(_) => {}
                    None if required.contains(field.as_str()) && !has_default(want) => {
                        let parents = if task.depends_on.is_empty() {
                            "it has no parent".to_owned()
                        } else {
                            format!("no parent ({}) is named so", task.depends_on.join(", "))
                        };
                        let msg = format!(
                            "task {name:?}: required input field {field:?} has no source: {parents} and the workflow declares no param {param:?} (declare it under `params:`, or map the field in `inputs:`)"
                        );
                        return err(&[], msg);
                    }
                    None => {}
                },
                Some(InputSource::Item(_)) | None => {}
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Side {
    Input,
    Output,
}

fn schema_of(task: &TaskSpec, side: Side) -> Option<&Value> {
    match &task.schema {
        Some(TaskSchema::Inline { input, output }) => match side {
            Side::Input => input.as_ref(),
            Side::Output => output.as_ref(),
        },
        _ => None,
    }
}

/// `schema` with `$ref`s (`#/$defs/…`, pointers into `root`) followed.
fn resolve<'a>(mut schema: &'a Value, root: &'a Value) -> &'a Value {
    for _ in 0..MAX_DEPTH {
        let Some(r) = schema.get("$ref").and_then(Value::as_str) else {
            break;
        };
        match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
            Some(next) => schema = next,
            None => break,
        }
    }
    schema
}

fn required(obj: &Value) -> BTreeSet<&str> {
    obj.get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn has_default(schema: &Value) -> bool {
    schema.get("default").is_some()
}

/// The schema at `path` (property names, or indexes into arrays, as the
/// SDKs read it) inside `schema`; `None` when an object with known
/// properties lacks the step, or a value of known type cannot have it. A
/// schema that says nothing about a step gives an accept-all schema.
fn walk<'a>(schema: &'a Value, root: &'a Value, path: &[&str]) -> Option<&'a Value> {
    static ANY: Value = Value::Bool(true);
    let mut at = resolve(schema, root);
    for step in path {
        let kinds = types(at, root, 0);
        let can = |t: &str| kinds.as_ref().is_none_or(|k| k.contains(t));
        let index = step.parse::<usize>().is_ok();
        if index && can("array") && !can("object") {
            match at.get("items") {
                Some(items) => at = resolve(items, root),
                None => return Some(&ANY),
            }
        } else if !can("object") {
            return None;
        } else {
            match at.get("properties").and_then(Value::as_object) {
                Some(props) => at = resolve(props.get(*step)?, root),
                None => return Some(&ANY),
            }
        }
    }
    Some(at)
}

/// A schema of a param's default value: its JSON type.
fn example(v: &Value) -> Value {
    let t = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    serde_json::json!({ "type": t })
}

/// The JSON types a schema allows; `None` for any.
fn types(schema: &Value, root: &Value, depth: usize) -> Option<BTreeSet<String>> {
    let schema = resolve(schema, root);
    if let Some(t) = schema.get("type") {
        return Some(match t {
            Value::String(s) => BTreeSet::from([s.clone()]),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => return None,
        });
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    let branches = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)?;
    let mut all = BTreeSet::new();
    for b in branches {
        all.extend(types(b, root, depth + 1)?);
    }
    Some(all)
}

/// Why a value of schema `have` (in `have_root`) may not fit `want` (in
/// `want_root`), naming the field's path; `None` when it fits, as far as
/// both schemas tell.
fn compare(
    want: &Value,
    want_root: &Value,
    have: &Value,
    have_root: &Value,
    path: &str,
    depth: usize,
) -> Option<String> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let (want, have) = (resolve(want, want_root), resolve(have, have_root));
    let (Some(w), Some(h)) = (types(want, want_root, 0), types(have, have_root, 0)) else {
        return None;
    };
    let fits = |t: &String| w.contains(t) || (t == "integer" && w.contains("number"));
    if !h.iter().all(fits) {
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(" or ");
        return Some(format!(
            "{path} is {} downstream but {} upstream",
            list(&w),
            list(&h)
        ));
    }
    if h.len() != 1 {
        return None;
    }
    if h.contains("object") {
        let (Some(wp), Some(hp)) = (
            want.get("properties").and_then(Value::as_object),
            have.get("properties").and_then(Value::as_object),
        ) else {
            return None;
        };
        let have_required = required(have);
        for (k, ws) in wp {
            let sub = format!("{path}.{k}");
            match hp.get(k) {
                Some(hs) => {
                    if let Some(why) = compare(ws, want_root, hs, have_root, &sub, depth + 1) {
                        return Some(why);
                    }
                    let needed = required(want).contains(k.as_str()) && !has_default(ws);
                    if needed && !have_required.contains(k.as_str()) && !has_default(hs) {
                        return Some(format!(
                            "{sub} is required downstream but optional upstream"
                        ));
                    }
                }
                None if required(want).contains(k.as_str()) && !has_default(ws) => {
                    return Some(format!(
                        "{sub} is required downstream but the upstream output has no such field"
                    ));
                }
                None => {}
            }
        }
    } else if h.contains("array") {
        if let (Some(wi), Some(hi)) = (want.get("items"), have.get("items")) {
            return compare(
                wi,
                want_root,
                hi,
                have_root,
                &format!("{path}[]"),
                depth + 1,
            );
        }
    }
    None
}
