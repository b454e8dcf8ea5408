//! Type schemas along the DAG's edges (docs/type_schemas.md): the check
//! `ork apply` runs (`spec::check_types`), the `inputs:` mapping and the
//! declared params in the input documents on both databases, schemas
//! stored with the version and returned by the API, and the real `ork`
//! binary refusing a wrong edge with file:line.

use ork_tests::bin::{ork_on, repo, text};
use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use ork_core::engine::{Engine, EngineConfig, TriggerOptions};
use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Executors, Outcome};
use ork_core::model::RunStatus;
use ork_core::payload::Payloads;
use ork_core::spec::{self, ExecutorKind};
use serde_json::json;

/// `check_types` on a YAML source: `Ok` or the error's text.
fn check(src: &str) -> Result<(), String> {
    let spec = spec::parse_str(src, None).map_err(|e| e.to_string())?;
    spec::check_types(&spec, src).map_err(|e| e.to_string())
}

/// A workflow `extract` → `load` with the given output and input schemas
/// (JSON, as flow-style YAML) and extra lines for `load`.
fn edge(output: &str, input: &str, load_extra: &str) -> String {
    format!(
        "name: w
tasks:
  extract:
    executor: noop
    schema: {{output: {output}}}
  load:
    executor: noop
    depends_on: [extract]
{load_extra}    schema: {{input: {input}}}
"
    )
}

const USERS: &str = r#"{"type": "object", "required": ["users"], "properties": {"users": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}, "email": {"type": "string"}}}}}}"#;

#[test]
fn a_fitting_edge_passes() {
    let input = r##"{"type": "object", "required": ["extract"], "properties": {"extract": {"$ref": "#/$defs/E"}}, "$defs": {"E": {"type": "object", "properties": {"users": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "number"}}}}}}}}"##;
    check(&edge(USERS, input, "")).unwrap();
}

#[test]
fn a_type_difference_names_both_tasks_the_field_and_the_line() {
    let input = r#"{"type": "object", "required": ["extract"], "properties": {"extract": {"type": "object", "properties": {"users": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}}}}}}}}"#;
    let err = check(&edge(USERS, input, "")).unwrap_err();
    assert_eq!(
        err,
        "line 8: task \"load\": input field \"extract\" does not fit the output of task \"extract\": extract.users[].id is string downstream but integer upstream"
    );
}

#[test]
fn a_required_field_no_parent_or_param_provides_is_refused() {
    let input = r#"{"type": "object", "required": ["region"], "properties": {"region": {"type": "string"}}}"#;
    let err = check(&edge(USERS, input, "")).unwrap_err();
    assert!(err.starts_with("line 6: task \"load\": required input field \"region\" has no source: no parent (extract) is named so"), "{err}");
    // Declared as a param (with or without a default), or optional: fine.
    let declared = edge(USERS, input, "").replace("tasks:", "params: {region: null}\ntasks:");
    check(&declared).unwrap();
    let optional =
        r#"{"type": "object", "properties": {"region": {"type": "string", "default": "eu"}}}"#;
    check(&edge(USERS, optional, "")).unwrap();
    // A default of the wrong type is refused.
    let wrong = edge(USERS, input, "").replace("tasks:", "params: {region: 3}\ntasks:");
    let err = check(&wrong).unwrap_err();
    assert!(
        err.contains("param \"region\": region is string downstream but integer upstream"),
        "{err}"
    );
}

#[test]
fn a_required_nested_field_missing_upstream_is_refused() {
    let input = r#"{"type": "object", "required": ["extract"], "properties": {"extract": {"type": "object", "required": ["total"], "properties": {"total": {"type": "integer"}}}}}"#;
    let err = check(&edge(USERS, input, "")).unwrap_err();
    assert!(
        err.ends_with(
            "extract.total is required downstream but the upstream output has no such field"
        ),
        "{err}"
    );
}

#[test]
fn inputs_mapping_is_followed_and_checked() {
    let input = r#"{"type": "object", "required": ["people"], "properties": {"people": {"type": "array", "items": {"type": "object"}}}}"#;
    check(&edge(USERS, input, "    inputs: {people: extract.users}\n")).unwrap();
    // The mapped path does not exist: the error points at the mapping.
    let err = check(&edge(
        USERS,
        input,
        "    inputs: {people: extract.people}\n",
    ))
    .unwrap_err();
    assert_eq!(
        err,
        "line 9: task \"load\": input field \"people\" takes extract.people, which the output schema of task \"extract\" does not have"
    );
    // It exists with another type.
    let err = check(&edge(
        USERS,
        input,
        "    inputs: {people: extract.users.id}\n",
    ))
    .unwrap_err();
    assert!(err.contains("does not have"), "{err}");
    // An index steps into an array's items.
    let id =
        r#"{"type": "object", "required": ["first"], "properties": {"first": {"type": "string"}}}"#;
    let err = check(&edge(
        USERS,
        id,
        "    inputs: {first: extract.users.0.id}\n",
    ))
    .unwrap_err();
    assert!(
        err.ends_with("first is string downstream but integer upstream"),
        "{err}"
    );
    let scalar =
        r#"{"type": "object", "required": ["n"], "properties": {"n": {"type": "string"}}}"#;
    let deep = r#"{"type": "object", "properties": {"a": {"type": "object", "properties": {"n": {"type": "integer"}}}}}"#;
    let err = check(&edge(deep, scalar, "    inputs: {n: extract.a.n}\n")).unwrap_err();
    assert!(
        err.ends_with("n is string downstream but integer upstream"),
        "{err}"
    );
}

#[test]
fn fanned_out_parents_give_a_list_and_unions_are_compared() {
    let one = r#"{"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}"#;
    let list = r#"{"type": "object", "required": ["extract"], "properties": {"extract": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "number"}}}}}}"#;
    let fanned = edge(one, list, "").replace(
        "executor: noop\n    schema: {output",
        "executor: noop\n    task_count: 3\n    schema: {output",
    );
    check(&fanned).unwrap();
    let err = check(&edge(one, list, "")).unwrap_err();
    assert!(
        err.ends_with("extract is array downstream but object upstream"),
        "{err}"
    );
    // An optional (nullable) output into a required string does not fit.
    let nullable = r#"{"type": "object", "properties": {"s": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}"#;
    let string =
        r#"{"type": "object", "required": ["s"], "properties": {"s": {"type": "string"}}}"#;
    let err = check(&edge(nullable, string, "    inputs: {s: extract.s}\n")).unwrap_err();
    assert!(
        err.ends_with("s is string downstream but null or string upstream"),
        "{err}"
    );
}

#[test]
fn a_schema_over_256_kib_is_refused() {
    let big = format!(
        r#"{{"type": "object", "description": "{}"}}"#,
        "d".repeat(300 * 1024)
    );
    let src = edge(USERS, &big, "");
    let spec = spec::parse_str(&src, None).unwrap_err().to_string();
    assert!(
        spec.starts_with("line 9: task \"load\": its schema is "),
        "{spec}"
    );
    assert!(
        spec.ends_with("bytes as JSON, the maximum is 256 KiB (262144 bytes)"),
        "{spec}"
    );
}

#[test]
fn inputs_entries_are_validated_with_their_line() {
    let src = "name: w\ntasks:\n  a: {executor: noop}\n  b:\n    executor: noop\n    depends_on: [a]\n    inputs:\n      x: c.y\n";
    let err = spec::parse_str(src, None).unwrap_err().to_string();
    assert!(
        err.starts_with("line 8: task \"b\": inputs.x is \"c.y\", which must be"),
        "{err}"
    );
    let src = "name: w\ntasks:\n  a: {executor: noop}\n  b:\n    executor: noop\n    depends_on: [a]\n    inputs: {x: item.k}\n";
    let err = spec::parse_str(src, None).unwrap_err().to_string();
    assert!(
        err.contains("takes the foreach item, but the task has no `foreach`"),
        "{err}"
    );
}

/// Completes each attempt at once with `{"n": 1, "list": [..]}`, keeping the
/// requests, each with its input document read at dispatch (an input file
/// is deleted once its attempt has ended).
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<DispatchRequest>>);

#[async_trait]
impl Executor for Recording {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let mut seen = req.clone();
        if let Some(path) = &req.input_file {
            seen.input = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        }
        self.0.lock().unwrap().push(seen);
        let pad = "p".repeat(if req.attempt.name == "big" {
            100_000
        } else {
            1
        });
        Ok(Dispatch::Finished(Outcome::success(Some(
            json!({"n": 1, "pad": pad}),
        ))))
    }
}

const MAPPED: &str = r#"
name: mapped
params: {region: eu, limit: null}
tasks:
  small: {executor: noop}
  big: {executor: noop}
  inline:
    executor: noop
    depends_on: [small]
    inputs: {count: small.n, where: params.region}
  by_file:
    executor: noop
    depends_on: [big]
    inputs: {count: big.n}
    schema:
      input: {type: object, required: [count], properties: {count: {type: integer}}}
"#;

/// The mapping reaches the input document, inline and by file; declared
/// params fill in their defaults (a given one wins); the schemas are
/// stored with the version.
async fn inputs_mapping_and_param_defaults_reach_the_input(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let exec = Arc::new(Recording::default());
    let engine = Engine::new(
        db.store.clone(),
        Executors::new().with(ExecutorKind::Noop, exec.clone()),
        EngineConfig {
            payloads: Payloads::new(dir.path().join("payloads")),
            ..EngineConfig::default()
        },
    );
    engine.apply(&parse(MAPPED), None).await.unwrap();
    let run = engine
        .trigger("mapped", json!({"limit": 5}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    assert_eq!(run.params, json!({"region": "eu", "limit": 5}));
    engine.advance(run.id).await.unwrap();
    let r = db.store.get_run(run.id).await.unwrap();
    assert_eq!(r.status, RunStatus::Success);
    let seen = exec.0.lock().unwrap().clone();
    let req = |name: &str| seen.iter().find(|r| r.attempt.name == name).unwrap();
    let inline = req("inline");
    assert!(inline.input_file.is_none());
    assert_eq!(
        inline.input["inputs"],
        json!({"count": "small.n", "where": "params.region"})
    );
    assert_eq!(inline.input["params"]["region"], "eu");
    let by_file = req("by_file");
    assert!(by_file.input_file.is_some(), "a large input goes by file");
    let doc = &by_file.input;
    assert_eq!(doc["inputs"], json!({"count": "big.n"}));
    assert_eq!(doc["upstream"]["big"]["n"], 1);
    let (_, stored) = db.store.workflow_spec("mapped", None).await.unwrap();
    assert_eq!(
        stored["tasks"]["by_file"]["schema"]["input"]["required"],
        json!(["count"])
    );
    assert_eq!(stored["params"], json!({"region": "eu", "limit": null}));

    // Whoever applies, a wrong edge between inline schemas is not stored.
    let wrong = MAPPED.replace("{count: {type: integer}}", "{count: {type: string}}");
    let mut spec = parse(&wrong);
    spec.tasks.get_mut("big").unwrap().schema = Some(ork_core::spec::TaskSchema::Inline {
        input: None,
        output: Some(json!({"type": "object", "properties": {"n": {"type": "integer"}}})),
    });
    let err = engine.apply(&spec, None).await.unwrap_err().to_string();
    assert!(
        err.contains("task \"by_file\": input field \"count\" does not fit the output of task \"big\": count is string downstream but integer upstream"),
        "{err}"
    );
    assert_eq!(db.store.workflow_spec("mapped", None).await.unwrap().0, 1);
}

on_both_backends!(inputs_mapping_and_param_defaults_reach_the_input);

/// A copy of workflows/my_etl in a temporary directory, so a test may break it.
fn my_etl_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = repo().join("workflows/my_etl");
    for sub in ["", "tasks", "data"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dir.path().join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    let sdk = repo().join("sdk/python");
    let yaml = std::fs::read_to_string(dir.path().join("etl.yaml"))
        .unwrap()
        .replace("../../sdk/python", sdk.to_str().unwrap())
        // The Rust task's crate is found from the checkout.
        .replace(
            "[cargo, run,",
            &format!(
                "[cargo, run, --manifest-path, {}/Cargo.toml,",
                repo().display()
            ),
        );
    std::fs::write(dir.path().join("etl.yaml"), yaml).unwrap();
    dir
}

/// The real `ork apply` derives the Python tasks' schemas, runs the Rust
/// task's `--ork-schema`, accepts my_etl, and refuses it once `load` wants
/// a field nothing provides, naming both ends, the field and file:line.
#[test]
fn ork_apply_checks_my_etl_and_refuses_a_wrong_edge() {
    ork_tests::bin::path("my-etl-score", "score");
    let dir = my_etl_copy();
    let apply = || {
        ork_on(dir.path())
            .args(["apply", "etl.yaml", "--json"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = apply();
    assert!(out.status.success(), "{}", text(&out));

    // `load` now wants `score.total`, which the Rust task's output lacks.
    let yaml = std::fs::read_to_string(dir.path().join("etl.yaml")).unwrap();
    let broken = yaml.replace("top_country: score.top_country", "top_country: score.total");
    std::fs::write(dir.path().join("etl.yaml"), &broken).unwrap();
    let out = apply();
    let err = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = broken
        .lines()
        .position(|l| l.contains("score.total"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "etl.yaml:{line}: task \"load\": input field \"top_country\" takes score.total, which the output schema of task \"score\" does not have"
        )),
        "{err}"
    );

    // A type that differs: `transform` sums spend as text.
    std::fs::write(dir.path().join("etl.yaml"), &yaml).unwrap();
    let models = dir.path().join("tasks/models.py");
    let src = std::fs::read_to_string(&models).unwrap();
    let i = src.find("class CountrySummary").unwrap();
    let changed = format!(
        "{}{}",
        &src[..i],
        src[i..].replacen("spend: float", "spend: str", 1)
    );
    std::fs::write(&models, changed).unwrap();
    let out = apply();
    let err = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    // `load` shares the models, so it still fits; the Rust task does not.
    let line = yaml
        .lines()
        .position(|l| l.contains("inputs: {countries"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("etl.yaml:{line}: task \"score\": input field \"countries\" does not fit the output of task \"transform\": countries[].spend is number downstream but string upstream")),
        "{err}"
    );
}
