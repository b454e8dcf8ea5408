//! Ork's bounds, in one place: what a spec, a trigger and a stored value may
//! be. Everything here is checked before anything is stored, so that no
//! later step (a deadline's arithmetic, an allocation of instances, a
//! database that cannot read a number back) meets a value it cannot handle.
//! The README's "Rules, checked before anything is stored" lists them.

use std::time::Duration;

use serde_json::Value;

/// Largest spec file read, checked before parsing.
pub const MAX_SPEC_BYTES: usize = 1 << 20;
/// Deepest nesting of a spec's YAML, checked before parsing (the parser's
/// time grows quadratically with depth).
pub const MAX_SPEC_DEPTH: usize = 64;
/// Longest `timeout` of an attempt.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest `retries.backoff` and `retries.max_backoff`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);
/// Most task instances of one run by default (`EngineConfig::max_instances`,
/// `ORK_MAX_INSTANCES`): the sum of all tasks' `task_count`.
pub const DEFAULT_MAX_INSTANCES: u32 = 100_000;
/// Most items one `foreach` fans out over (`EngineConfig::max_foreach_items`,
/// `ORK_MAX_FOREACH_ITEMS`).
pub const DEFAULT_MAX_FOREACH_ITEMS: usize = 100_000;
/// Most `non_retryable_exit_codes` of one task (there are 255 exit codes
/// that can fail; a longer list is a mistake).
pub const MAX_NON_RETRYABLE_EXIT_CODES: usize = 64;
/// Longest idempotency key, in bytes.
/// Most cron slots one backfill may cover.
pub const MAX_BACKFILL_SLOTS: usize = 10_000;
/// Most runs a backfill may keep open at once (`--max-parallel`).
pub const MAX_BACKFILL_PARALLEL: u32 = 10_000;
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
/// Largest run params, serialized as JSON.
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;
/// Largest `schema:` of a task (its input and output JSON Schemas,
/// serialized), as stored inline with the workflow version.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;
/// Largest magnitude of a JSON number stored (beyond it, PostgreSQL's
/// `jsonb` prints digits that JSON parsers read back as infinity).
pub const MAX_JSON_NUMBER: f64 = 1e300;
/// Furthest ahead any computed time (deadline, lease, token expiry, retry)
/// is put: later ones are clamped, so time arithmetic cannot overflow.
pub const MAX_HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d`, clamped to [`MAX_HORIZON`]: never panics, never overflows.
pub fn after(now: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    let d = chrono::TimeDelta::from_std(d.min(MAX_HORIZON)).unwrap_or(chrono::TimeDelta::MAX);
    now.checked_add_signed(d).unwrap_or(now)
}

/// Checks that a JSON value can be stored and read back on both backends:
/// no NUL in any string or key, no number beyond [`MAX_JSON_NUMBER`] (or
/// so small it is not zero but not readable either). `path` names the value
/// in errors (`params`, then `params.n`, `params.list[2]`).
pub fn check_json(value: &Value, path: &str) -> Result<(), String> {
    match value {
        Value::String(s) => check_text(s, path),
        Value::Number(n) => match n.as_f64() {
            _ if n.is_i64() || n.is_u64() => Ok(()),
            Some(x) if x.is_finite() && (x == 0.0 || (1e-300..MAX_JSON_NUMBER).contains(&x.abs())) => {
                Ok(())
            }
            _ => Err(format!(
                "{path}: the number {n} is out of range (numbers must be integers of 64 bits or between 1e-300 and 1e300 in magnitude)"
            )),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_json(v, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            let path = format!("{path}.{k}");
            check_text(k, &path)?;
            check_json(v, &path)
        }),
        Value::Null | Value::Bool(_) => Ok(()),
    }
}

/// A text the database can store: no NUL character.
pub fn check_text(s: &str, path: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err(format!(
            "{}: contains a NUL character (\\u0000), which cannot be stored",
            path.escape_debug()
        ));
    }
    Ok(())
}

/// The deepest nesting of a YAML text, estimated without parsing it: block
/// indentation levels plus open flow brackets (`[`, `{`) outside quotes.
/// Stops counting at `limit + 1`.
pub fn yaml_depth(src: &str, limit: usize) -> usize {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut deepest = 0usize;
    for line in src.lines() {
        let body = line.trim_start_matches([' ', '-', '\t']);
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if flow == 0 {
            let indent = line.len() - body.len();
            while indents.last().is_some_and(|&i| i >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let mut quote: Option<char> = None;
        for c in body.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => flow += 1,
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            deepest = deepest.max(indents.len() + flow);
            if deepest > limit {
                return deepest;
            }
        }
        deepest = deepest.max(indents.len() + flow);
        if deepest > limit {
            return deepest;
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_and_strings() {
        let ok = serde_json::json!({"a": [1, -1, u64::MAX, i64::MIN, 0.5, 1e299, -1e-299, 0.0], "b": "x"});
        assert_eq!(check_json(&ok, "params"), Ok(()));
        let bad = serde_json::json!({"n": 1.7976931348623157e308});
        assert!(check_json(&bad, "params")
            .unwrap_err()
            .starts_with("params.n: "));
        let bad = serde_json::json!({"l": [1, "a\u{0}"]});
        assert!(check_json(&bad, "params")
            .unwrap_err()
            .starts_with("params.l[1]: "));
        let bad = serde_json::json!({"k\u{0}": 1});
        assert!(check_json(&bad, "params").unwrap_err().contains("NUL"));
    }

    #[test]
    fn time_arithmetic_saturates() {
        let now = chrono::Utc::now();
        let far = after(now, Duration::MAX);
        assert_eq!(far, after(now, MAX_HORIZON));
        assert!(far > now);
    }

    #[test]
    fn depth_of_yaml() {
        assert_eq!(yaml_depth("a: 1\nb:\n  c: [1, {d: 2}]\n", 64), 4);
        assert_eq!(yaml_depth("a: '[[[['\n", 64), 1);
        assert!(yaml_depth(&"[".repeat(1000), 64) == 65);
    }
}
