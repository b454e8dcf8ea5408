//! Semantic checks of a deserialized spec: what serde cannot see (names,
//! references, the graph, executor requirements). The first problem found is
//! reported, with the line it is on.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::{ExecutorKind, SpecError, TaskSpec, WorkflowSpec};
use crate::dag::Dag;
use crate::limits::{
    self, DEFAULT_MAX_INSTANCES, MAX_BACKOFF, MAX_NON_RETRYABLE_EXIT_CODES, MAX_TIMEOUT,
};

/// Upper bound on `retries.count`: more is almost surely a typo, and each
/// retry is a row in the store.
const MAX_RETRIES: u32 = 100;

/// `non_retryable_exit_codes`: exit codes of a failure (1 to 255), each
/// once, at most [`MAX_NON_RETRYABLE_EXIT_CODES`].
fn check_exit_codes(name: &str, codes: &[i64]) -> Result<(), String> {
    if codes.len() > MAX_NON_RETRYABLE_EXIT_CODES {
        return Err(format!(
            "task {name:?}: non_retryable_exit_codes has {} entries, the maximum is {MAX_NON_RETRYABLE_EXIT_CODES}",
            codes.len()
        ));
    }
    for (i, code) in codes.iter().enumerate() {
        if !(1..=255).contains(code) {
            return Err(format!(
                "task {name:?}: non_retryable_exit_codes has {code}, which is not the exit code of a failure (1 to 255)"
            ));
        }
        if codes[..i].contains(code) {
            return Err(format!(
                "task {name:?}: non_retryable_exit_codes has {code} twice"
            ));
        }
    }
    Ok(())
}

pub(super) fn validate(spec: &WorkflowSpec, src: &str) -> Result<(), SpecError> {
    let at = |task: &str, within: &[&str], msg: String| {
        Err(SpecError::new(msg).at(line_of(src, task, within)))
    };
    if spec.name.trim().is_empty() {
        let line = top_level_key(src, "name").map(|i| i + 1);
        return Err(SpecError::new("workflow name is empty").at(line));
    }
    if let Err(msg) = limits::check_text(&spec.name, "name") {
        let line = top_level_key(src, "name").map(|i| i + 1);
        return Err(SpecError::new(msg).at(line));
    }
    if spec.timezone.is_some() && spec.schedule.is_none() {
        let line = top_level_key(src, "timezone").map(|i| i + 1);
        return Err(SpecError::new("`timezone` needs a `schedule`").at(line));
    }
    if let Some(Err(msg)) = spec.parsed_schedule() {
        let key = if msg.contains("time zone") {
            "timezone"
        } else {
            "schedule"
        };
        return Err(SpecError::new(msg).at(top_level_key(src, key).map(|i| i + 1)));
    }
    if spec.tasks.is_empty() {
        let line = top_level_key(src, "tasks").map(|i| i + 1);
        let msg = format!("workflow {:?} has no tasks", spec.name);
        return Err(SpecError::new(msg).at(line));
    }
    for (name, task) in &spec.tasks {
        if name.is_empty() {
            return at(name, &[], "task name is empty".into());
        }
        if !name.chars().all(is_name_char) {
            let msg =
                format!("task name {name:?} may only contain letters, digits, '_', '.' and '-'");
            return at(name, &[], msg);
        }
        check_executor(name, task, spec)
            .map_err(|(within, msg)| SpecError::new(msg).at(line_of(src, name, within)))?;
        if task.task_count == 0 {
            return at(
                name,
                &["task_count"],
                format!("task {name:?}: task_count must be at least 1"),
            );
        }
        if task.task_count > DEFAULT_MAX_INSTANCES {
            let msg = format!(
                "task {name:?}: task_count is {}, the maximum is {DEFAULT_MAX_INSTANCES}",
                task.task_count
            );
            return at(name, &["task_count"], msg);
        }
        if let Some(f) = &task.foreach {
            if task.foreach_source().is_none() {
                let msg = format!(
                    "task {name:?}: foreach {f:?} must name a direct parent (a `depends_on` entry), optionally followed by a path into its output (`parent.key`)"
                );
                return at(name, &["foreach"], msg);
            }
            if task.task_count > 1 {
                let msg = format!(
                    "task {name:?}: foreach and task_count > 1 cannot be combined (foreach sets the instance count)"
                );
                return at(name, &["foreach"], msg);
            }
            let (parent, _) = task.foreach_source().expect("checked");
            if let Some(p) = spec.tasks.get(parent) {
                if p.task_count > 1 || p.foreach.is_some() {
                    let msg = format!(
                        "task {name:?}: foreach over {parent:?}, which has several instances: foreach needs a single-instance parent"
                    );
                    return at(name, &["foreach"], msg);
                }
            }
        }
        if let Err(msg) = check_schema_size(name, task) {
            return at(name, &["schema"], msg);
        }
        for (field, source) in &task.inputs {
            let msg = match task.input_source(source) {
                _ if field.is_empty() => format!("task {name:?}: an `inputs` field name is empty"),
                None => format!(
                    "task {name:?}: inputs.{field} is {source:?}, which must be `params.NAME`, `item[.path]` or a direct parent (a `depends_on` entry) with an optional path (`parent.key`)"
                ),
                Some(super::InputSource::Item(_)) if task.foreach.is_none() => format!(
                    "task {name:?}: inputs.{field} takes the foreach item, but the task has no `foreach`"
                ),
                Some(_) => continue,
            };
            return at(name, &["inputs", field], msg);
        }
        if task.retries.count > MAX_RETRIES {
            let msg = format!(
                "task {name:?}: retries.count is {}, the maximum is {MAX_RETRIES}",
                task.retries.count
            );
            return at(name, &["retries"], msg);
        }
        if let Err(msg) = check_exit_codes(name, &task.non_retryable_exit_codes) {
            return at(name, &["non_retryable_exit_codes"], msg);
        }
        if task.timeout == Some(std::time::Duration::ZERO) {
            return at(
                name,
                &["timeout"],
                format!("task {name:?}: timeout must be greater than zero"),
            );
        }
        if let Some(t) = task.timeout.filter(|t| *t > MAX_TIMEOUT) {
            let msg = format!(
                "task {name:?}: timeout is {}, the maximum is {}",
                humantime::format_duration(t),
                humantime::format_duration(MAX_TIMEOUT)
            );
            return at(name, &["timeout"], msg);
        }
        for (field, d) in [
            ("backoff", task.retries.backoff),
            ("max_backoff", task.retries.max_backoff),
        ] {
            if d > MAX_BACKOFF {
                let msg = format!(
                    "task {name:?}: retries.{field} is {}, the maximum is {}",
                    humantime::format_duration(d),
                    humantime::format_duration(MAX_BACKOFF)
                );
                return at(name, &["retries"], msg);
            }
        }
        for dep in &task.depends_on {
            if dep == name {
                return at(
                    name,
                    &["depends_on", dep],
                    format!("task {name:?} depends on itself"),
                );
            }
            if !spec.tasks.contains_key(dep) {
                let msg = format!("task {name:?} depends on unknown task {dep:?}");
                return at(name, &["depends_on", dep], msg);
            }
        }
    }
    let instances = spec.instances();
    if instances > u64::from(DEFAULT_MAX_INSTANCES) {
        let line = top_level_key(src, "tasks").map(|i| i + 1);
        let msg = format!(
            "workflow {:?} has {instances} task instances (the sum of its tasks' task_count), the maximum is {DEFAULT_MAX_INSTANCES}",
            spec.name
        );
        return Err(SpecError::new(msg).at(line));
    }
    super::concurrency::validate(spec, src)?;
    if let Err(mut cycle) = Dag::new(spec) {
        // Start at the smallest name so the message does not depend on traversal.
        let min = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
        cycle.rotate_left(min);
        // The edge that closes the cycle is `cycle[0]` depending on the last member.
        let (first, last) = (&cycle[0], &cycle[cycle.len() - 1]);
        let msg = format!("cycle: {} -> {first}", cycle.join(" -> "));
        return at(first, &["depends_on", last], msg);
    }
    // Every other string (commands, env, args, targets) must be storable.
    let json = serde_json::to_value(spec).map_err(|e| SpecError::new(e.to_string()))?;
    limits::check_json(&json, "spec").map_err(SpecError::new)?;
    Ok(())
}

/// What an executor needs from its task; on failure, where to point and why.
fn check_executor(
    name: &str,
    task: &TaskSpec,
    spec: &WorkflowSpec,
) -> Result<(), (&'static [&'static str], String)> {
    match task.executor {
        ExecutorKind::Process
            if task
                .command
                .as_ref()
                .and_then(|c| c.words().first())
                .is_none_or(|p| p.is_empty()) =>
        {
            Err((
                &[],
                format!("task {name:?}: executor \"process\" needs a `command`"),
            ))
        }
        ExecutorKind::Python => {
            let Some(file) = task.file.as_ref().filter(|f| !f.as_os_str().is_empty()) else {
                let msg = format!(
                    "task {name:?}: executor \"python\" needs a `file` (the script to run)"
                );
                return Err((&[], msg));
            };
            // Only a spec read from a file knows where its scripts are.
            match &spec.base_dir {
                Some(dir) if !dir.join(file).is_file() => Err((
                    &["file"],
                    format!(
                        "task {name:?}: file {:?} not found (looked in {:?})",
                        file.display().to_string(),
                        dir.display().to_string()
                    ),
                )),
                _ => Ok(()),
            }
        }
        ExecutorKind::Cloudrun if task.cloudrun.is_none() => Err((
            &[],
            format!("task {name:?}: executor \"cloudrun\" needs a `cloudrun:` block (job, project, region)"),
        )),
        ExecutorKind::Fargate if task.fargate.is_none() => Err((
            &[],
            format!("task {name:?}: executor \"fargate\" needs a `fargate:` block (cluster, task_definition, container, subnets)"),
        )),
        ExecutorKind::Kubernetes => match &task.kubernetes {
            None => Err((
                &[],
                format!("task {name:?}: executor \"kubernetes\" needs a `kubernetes:` block (image, namespace, …)"),
            )),
            Some(k) => validate_kubernetes(name, k),
        },
        ExecutorKind::Lambda => match &task.lambda {
            None => Err((
                &[],
                format!("task {name:?}: executor \"lambda\" needs a `lambda:` block (function, qualifier)"),
            )),
            Some(l) => validate_lambda(name, l),
        },
        ExecutorKind::Azure => match &task.azure {
            None => Err((
                &[],
                format!("task {name:?}: executor \"azure\" needs an `azure:` block (subscription, resource_group, job)"),
            )),
            Some(a) => validate_azure(name, a),
        },
        kind if task.lambda.is_some() => Err((
            &["lambda"],
            format!("task {name:?}: a `lambda:` block needs `executor: lambda` (not {:?})", kind.as_str()),
        )),
        kind if task.azure.is_some() => Err((
            &["azure"],
            format!("task {name:?}: an `azure:` block needs `executor: azure` (not {:?})", kind.as_str()),
        )),
        kind if task.kubernetes.is_some() => Err((
            &["kubernetes"],
            format!("task {name:?}: a `kubernetes:` block needs `executor: kubernetes` (not {:?})", kind.as_str()),
        )),
        kind if task.cloudrun.is_some() && kind != ExecutorKind::Cloudrun => Err((
            &["cloudrun"],
            format!("task {name:?}: a `cloudrun:` block needs `executor: cloudrun`"),
        )),
        kind if task.fargate.is_some() && kind != ExecutorKind::Fargate => Err((
            &["fargate"],
            format!("task {name:?}: a `fargate:` block needs `executor: fargate`"),
        )),
        _ => Ok(()),
    }
}

/// A `lambda:` block's fields, as Lambda's `Invoke` checks them: a name
/// (or ARN) of at most 140 characters, a version or alias.
fn validate_lambda(
    name: &str,
    l: &crate::spec::LambdaTarget,
) -> Result<(), (&'static [&'static str], String)> {
    let function_ok = !l.function.is_empty()
        && l.function.len() <= 140
        && l.function
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'));
    if !function_ok {
        return Err((
            &["lambda", "function"],
            format!(
                "task {name:?}: lambda function {:?} is not a function name or ARN (letters, digits, '-', '_', ':'; at most 140)",
                l.function
            ),
        ));
    }
    if let Some(q) = &l.qualifier {
        let ok = q == "$LATEST"
            || (!q.is_empty()
                && q.len() <= 128
                && q.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')));
        if !ok {
            return Err((
                &["lambda", "qualifier"],
                format!("task {name:?}: lambda qualifier {q:?} is not a version or alias"),
            ));
        }
    }
    Ok(())
}

/// An `azure:` block's fields: each becomes one segment of an ARM path.
fn validate_azure(
    name: &str,
    a: &crate::spec::AzureTarget,
) -> Result<(), (&'static [&'static str], String)> {
    let fields: [(&'static [&'static str], &str, Option<&String>); 4] = [
        (
            &["azure", "subscription"],
            "subscription",
            Some(&a.subscription),
        ),
        (
            &["azure", "resource_group"],
            "resource_group",
            Some(&a.resource_group),
        ),
        (&["azure", "job"], "job", Some(&a.job)),
        (&["azure", "container"], "container", a.container.as_ref()),
    ];
    for (path, field, value) in fields {
        let Some(v) = value else { continue };
        // Resource groups allow '.', '(' and ')' too; none allows '/'.
        let ok = !v.is_empty()
            && v.len() <= 90
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
            && !v.ends_with('.');
        if !ok {
            return Err((
                path,
                format!("task {name:?}: azure {field} {v:?} is not a valid name (letters, digits, '-', '_', '.', '(', ')'; at most 90)"),
            ));
        }
    }
    Ok(())
}

/// A `kubernetes:` block's fields, as the API server would check them.
fn validate_kubernetes(
    name: &str,
    k: &crate::spec::KubernetesTarget,
) -> Result<(), (&'static [&'static str], String)> {
    if k.image.trim().is_empty() || k.image.chars().any(char::is_whitespace) {
        return Err((
            &["kubernetes", "image"],
            format!(
                "task {name:?}: kubernetes image {:?} is not an image reference",
                k.image
            ),
        ));
    }
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if let Some(ns) = k.namespace.as_deref().filter(|ns| !dns_label(ns)) {
        return Err((
            &["kubernetes", "namespace"],
            format!("task {name:?}: kubernetes namespace {ns:?} is not a DNS label (lowercase letters, digits, '-', at most 63)"),
        ));
    }
    let dns_subdomain = |s: &str| !s.is_empty() && s.len() <= 253 && s.split('.').all(&dns_label);
    if let Some(sa) = k.service_account.as_deref().filter(|sa| !dns_subdomain(sa)) {
        return Err((
            &["kubernetes", "service_account"],
            format!("task {name:?}: kubernetes service_account {sa:?} is not a valid name"),
        ));
    }
    for (field, value) in [("cpu", &k.cpu), ("memory", &k.memory)] {
        if let Some(v) = value.as_deref().filter(|v| !is_quantity(v)) {
            let at: &'static [&'static str] = if field == "cpu" {
                &["kubernetes", "cpu"]
            } else {
                &["kubernetes", "memory"]
            };
            return Err((
                at,
                format!("task {name:?}: kubernetes {field} {v:?} is not a quantity (like 500m, 2, 512Mi, 1Gi)"),
            ));
        }
    }
    for t in &k.tolerations {
        if let Some(op) = t
            .operator
            .as_deref()
            .filter(|op| !matches!(*op, "Exists" | "Equal"))
        {
            return Err((
                &["kubernetes", "tolerations", "operator"],
                format!("task {name:?}: toleration operator {op:?} is not Exists or Equal"),
            ));
        }
        if let Some(effect) = t
            .effect
            .as_deref()
            .filter(|e| !matches!(*e, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute"))
        {
            return Err((
                &["kubernetes", "tolerations", "effect"],
                format!("task {name:?}: toleration effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"),
            ));
        }
    }
    Ok(())
}

/// A Kubernetes resource quantity: a decimal number with an optional
/// suffix (`m`, `k`, `M`, `G`, `T`, `P`, `E`, `Ki`…`Ei`).
fn is_quantity(v: &str) -> bool {
    const SUFFIXES: [&str; 14] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E", "",
    ];
    SUFFIXES.iter().any(|suffix| {
        v.strip_suffix(suffix).is_some_and(|num| {
            !num.is_empty()
                && num.chars().all(|c| c.is_ascii_digit() || c == '.')
                && num.chars().filter(|c| *c == '.').count() <= 1
                && num.chars().any(|c| c.is_ascii_digit())
        })
    })
}

/// A task's `schema:` fits [`limits::MAX_SCHEMA_BYTES`].
pub(super) fn check_schema_size(name: &str, task: &TaskSpec) -> Result<(), String> {
    let size = task
        .schema
        .as_ref()
        .and_then(|s| serde_json::to_string(s).ok())
        .map_or(0, |s| s.len());
    if size > limits::MAX_SCHEMA_BYTES {
        return Err(format!(
            "task {name:?}: its schema is {size} bytes as JSON, the maximum is 256 KiB ({} bytes)",
            limits::MAX_SCHEMA_BYTES
        ));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Index of the line where top-level `key:` is.
pub(super) fn top_level_key(src: &str, key: &str) -> Option<usize> {
    src.lines()
        .position(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
}

/// The 1-based line of task `task`'s key, found by scanning the source since
/// serde_norway keeps no spans. With `within`, each word is searched in turn
/// inside the task's block (`["depends_on", "load"]` finds that entry of the
/// list); a word not found leaves the line of the last one that was. Flow
/// style (`tasks: {a: ...}`) falls back to the `tasks:` line.
pub(super) fn line_of(src: &str, task: &str, within: &[&str]) -> Option<usize> {
    let tasks_line = top_level_key(src, "tasks")?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let significant = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let keys = [task.to_owned(), format!("\"{task}\""), format!("'{task}'")];
    let is_key = |l: &str| {
        keys.iter().any(|k| {
            l.strip_prefix(k.as_str())
                .is_some_and(|r| r.starts_with(':'))
        })
    };

    // Byte offset of each line after `tasks:`, skipping blanks and comments.
    let mut offset = 0;
    let lines: Vec<(usize, &str)> = src
        .split_inclusive('\n')
        .map(|l| {
            offset += l.len();
            (offset - l.len(), l)
        })
        .skip(tasks_line + 1)
        .filter(|(_, l)| significant(l))
        .collect();
    let task_indent = lines.first().map(|(_, l)| indent(l)).filter(|&n| n > 0);
    let (mut start, mut end) = (None, src.len());
    for &(off, l) in &lines {
        let n = indent(l);
        if task_indent.is_none_or(|ti| n < ti) || (start.is_some() && Some(n) <= task_indent) {
            end = off;
            break;
        }
        if start.is_none() && Some(n) == task_indent && is_key(&l[n..]) {
            start = Some(off + n + l[n..].find(':').unwrap_or(0));
        }
    }
    let Some(mut pos) = start else {
        return Some(tasks_line + 1);
    };
    let mut found = pos;
    for word in within {
        let Some(i) = find_word(&src[pos..end], word) else {
            break;
        };
        found = pos + i;
        pos = found + word.len();
    }
    Some(src[..found].matches('\n').count() + 1)
}

/// Offset of `word` in `hay` where it is not part of a longer name.
fn find_word(hay: &str, word: &str) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    hay.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + word.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

/// Deserializes `tasks`, rejecting a name given twice (a plain `BTreeMap`
/// would keep the last one). The check runs inside the key's visitor so
/// serde_norway attaches the line of the second occurrence.
pub(super) fn unique_tasks<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, TaskSpec>, D::Error> {
    struct Tasks;
    impl<'de> Visitor<'de> for Tasks {
        type Value = BTreeMap<String, TaskSpec>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of task names to tasks")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut tasks = BTreeMap::new();
            while let Some(name) = map.next_key_seed(NewName(&tasks))? {
                let task = map.next_value()?;
                tasks.insert(name, task);
            }
            Ok(tasks)
        }
    }
    d.deserialize_map(Tasks)
}

/// A task name not yet in the map.
struct NewName<'a>(&'a BTreeMap<String, TaskSpec>);

impl<'de> DeserializeSeed<'de> for NewName<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NewName<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a task name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<String, E> {
        if self.0.contains_key(name) {
            return Err(E::custom(format_args!("task {name:?} is defined twice")));
        }
        Ok(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const SRC: &str = "\
name: x
# tasks: not this one
tasks:
  # a comment at task level
  extract:
    command: extract-all
    args: ['--to', load]

  \"load\":
    depends_on:
      - extract2
      - extract
  'report': {depends_on: [load]}
other: 1
";

    #[test]
    fn finds_task_keys() {
        assert_eq!(line_of(SRC, "extract", &[]), Some(5));
        assert_eq!(line_of(SRC, "load", &[]), Some(9));
        assert_eq!(line_of(SRC, "report", &[]), Some(13));
        assert_eq!(line_of(SRC, "missing", &[]), Some(3));
        assert_eq!(line_of("name: x\n", "a", &[]), None);
    }

    #[test]
    fn finds_words_as_whole_names_within_the_task() {
        assert_eq!(line_of(SRC, "load", &["depends_on", "extract"]), Some(12));
        assert_eq!(line_of(SRC, "report", &["depends_on", "load"]), Some(13));
        // `load` in extract's args is not in extract's depends_on, which does not exist.
        assert_eq!(line_of(SRC, "extract", &["depends_on", "load"]), Some(5));
        // Not past the end of the task's block.
        assert_eq!(line_of(SRC, "extract", &["other"]), Some(5));
    }

    #[test]
    fn flow_style_tasks_fall_back_to_tasks_line() {
        let src = "name: x\ntasks: {a: {depends_on: [b]}}\n";
        assert_eq!(line_of(src, "a", &["depends_on", "b"]), Some(2));
    }
}
