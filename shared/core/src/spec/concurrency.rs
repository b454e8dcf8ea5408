//! Claim-time limits a spec declares (docs/concurrency.md): how many runs
//! of a workflow, instances of a task, or attempts under a key may be in
//! flight at once, and named rate limits that tasks draw tokens from.
//! The engine enforces them when it claims (`store::Tx::claim_limited`).

use serde::{Deserialize, Serialize};

use super::validate::{line_of, top_level_key};
use super::{SpecError, WorkflowSpec};

/// Largest `max_runs`, `max_parallel`, `limit` and `cost`.
pub const MAX_LIMIT: u32 = 100_000;
/// Largest `per_second` of a rate limit.
pub const MAX_PER_SECOND: f64 = 100_000.0;
/// Smallest `per_second` (one token a day).
pub const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;
/// Longest rendered concurrency key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// A workflow's `concurrency:`: at most `max_runs` runs in flight, and/or
/// at most `limit` runs per value of `key`. A run over the limit waits
/// (`queue`), is not run (`skip`), or cancels the oldest run in flight
/// (`cancel_oldest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConcurrency {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "OnLimit::is_queue")]
    pub on_limit: OnLimit,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLimit {
    #[default]
    Queue,
    Skip,
    CancelOldest,
}

impl OnLimit {
    fn is_queue(&self) -> bool {
        *self == OnLimit::Queue
    }
}

/// A task's `concurrency:`: at most `limit` attempts in flight whose `key`
/// renders to the same value, across all runs and workflows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimit {
    pub key: String,
    pub limit: u32,
}

/// A named rate limit of the workflow's `rate_limits:`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
}

/// A task's `rate_limit:`: the named limit it draws `cost` tokens from per
/// attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateUse {
    pub name: String,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub cost: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Renders a key template: each `{{ params.NAME }}` is replaced by that
/// param (a string as is, anything else as JSON; absent: empty).
pub fn render_key(template: &str, params: &serde_json::Value) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let expr = rest[start + 2..start + end].trim();
        let name = expr.strip_prefix("params.").unwrap_or(expr);
        match params.get(name) {
            Some(serde_json::Value::String(s)) => out.push_str(s),
            Some(serde_json::Value::Null) | None => {}
            Some(v) => out.push_str(&v.to_string()),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// A key template is text with `{{ params.NAME }}` placeholders only.
fn check_template(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("is empty".into());
    }
    if template.len() > MAX_KEY_BYTES {
        return Err(format!(
            "is {} bytes, the maximum is {MAX_KEY_BYTES}",
            template.len()
        ));
    }
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            return Err(format!("{template:?} has an unclosed `{{{{`"));
        };
        let expr = rest[start + 2..start + end].trim();
        let ok = expr.strip_prefix("params.").is_some_and(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if !ok {
            return Err(format!(
                "{template:?}: `{{{{ {expr} }}}}` must be `{{{{ params.NAME }}}}`"
            ));
        }
        rest = &rest[start + end + 2..];
    }
    Ok(())
}

fn check_count(what: &str, n: u32) -> Result<(), String> {
    if n == 0 {
        return Err(format!("{what} must be at least 1"));
    }
    if n > MAX_LIMIT {
        return Err(format!("{what} is {n}, the maximum is {MAX_LIMIT}"));
    }
    Ok(())
}

/// Checks the limits of a spec; errors name the field and its line.
pub(super) fn validate(spec: &WorkflowSpec, src: &str) -> Result<(), SpecError> {
    let top = |key: &str, msg: String| {
        Err(SpecError::new(msg).at(top_level_key(src, key).map(|i| i + 1)))
    };
    if let Some(c) = &spec.concurrency {
        let nested = |field: &str, msg: String| {
            let line = top_level_key(src, "concurrency").map(|i| {
                src.lines()
                    .enumerate()
                    .skip(i + 1)
                    .take_while(|(_, l)| l.starts_with(' ') || l.trim().is_empty())
                    .find(|(_, l)| l.trim_start().starts_with(&format!("{field}:")))
                    .map_or(i, |(j, _)| j)
                    + 1
            });
            Err(SpecError::new(msg).at(line))
        };
        if c.max_runs.is_none() && c.key.is_none() {
            return top(
                "concurrency",
                "concurrency: needs `max_runs` or `key` (with `limit`)".into(),
            );
        }
        if let Some(n) = c.max_runs {
            if let Err(m) = check_count("concurrency.max_runs", n) {
                return nested("max_runs", m);
            }
        }
        match (&c.key, c.limit) {
            (Some(k), Some(n)) => {
                if let Err(m) = check_template(k) {
                    return nested("key", format!("concurrency.key {m}"));
                }
                if let Err(m) = check_count("concurrency.limit", n) {
                    return nested("limit", m);
                }
            }
            (Some(_), None) => return nested("key", "concurrency.key needs a `limit`".into()),
            (None, Some(_)) => {
                return nested("limit", "concurrency.limit needs a `key`".into());
            }
            (None, None) => {}
        }
    }
    for (name, rate) in &spec.rate_limits {
        if name.is_empty() || name.len() > MAX_KEY_BYTES {
            return top(
                "rate_limits",
                format!("rate_limits: the name {name:?} must be 1 to {MAX_KEY_BYTES} bytes"),
            );
        }
        if !(MIN_PER_SECOND..=MAX_PER_SECOND).contains(&rate.per_second) {
            return top(
                "rate_limits",
                format!(
                    "rate_limits.{name}.per_second is {}, it must be between {MIN_PER_SECOND:e} (one a day) and {MAX_PER_SECOND}",
                    rate.per_second
                ),
            );
        }
    }
    for (name, task) in &spec.tasks {
        let at = |within: &[&str], msg: String| {
            Err(SpecError::new(format!("task {name:?}: {msg}")).at(line_of(src, name, within)))
        };
        if let Some(n) = task.max_parallel {
            if let Err(m) = check_count("max_parallel", n) {
                return at(&["max_parallel"], m);
            }
        }
        if let Some(k) = &task.concurrency {
            if let Err(m) = check_template(&k.key) {
                return at(&["concurrency", "key"], format!("concurrency.key {m}"));
            }
            if let Err(m) = check_count("concurrency.limit", k.limit) {
                return at(&["concurrency", "limit"], m);
            }
        }
        if let Some(r) = &task.rate_limit {
            if !spec.rate_limits.contains_key(&r.name) {
                let known: Vec<&str> = spec.rate_limits.keys().map(String::as_str).collect();
                return at(
                    &["rate_limit", "name"],
                    format!(
                        "rate_limit.name {:?} is not declared in the workflow's `rate_limits` (declared: {known:?})",
                        r.name
                    ),
                );
            }
            if let Err(m) = check_count("rate_limit.cost", r.cost) {
                return at(&["rate_limit", "cost"], m);
            }
        }
    }
    Ok(())
}

impl WorkflowSpec {
    /// Whether claims of this workflow's runs go through the limits.
    pub fn has_limits(&self) -> bool {
        self.concurrency.is_some()
            || self.tasks.values().any(|t| {
                t.max_parallel.is_some() || t.concurrency.is_some() || t.rate_limit.is_some()
            })
    }
}
