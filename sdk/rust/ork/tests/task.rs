//! The SDK under the worker contract, with a fixed environment.

use ork::{build_input, run_with, Env};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize, JsonSchema, Debug, PartialEq)]
struct User {
    id: u32,
    email: String,
}

#[derive(Deserialize, JsonSchema, Debug, PartialEq)]
struct Extracted {
    users: Vec<User>,
}

#[derive(Deserialize, JsonSchema, Debug)]
struct Input {
    day: String,
    extract: Extracted,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Serialize, JsonSchema)]
struct Output {
    count: usize,
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn env(&self, input: Value) -> Env {
        Env::from_pairs([
            ("ORK_INPUT", input.to_string()),
            ("ORK_OUTPUT", self.path("output.json")),
            ("ORK_ERROR", self.path("error.json")),
        ])
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    fn read(&self, name: &str) -> Option<Value> {
        let bytes = std::fs::read(self.dir.path().join(name)).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    }
}

fn doc() -> Value {
    json!({"params": {"day": "2026-01-02", "limit": 1},
           "upstream": {"extract": {"users": [{"id": 1, "email": "a@x"}, {"id": 2, "email": "b@x"}]}}})
}

fn count(input: Input) -> ork::Result<Output> {
    assert_eq!(input.day, "2026-01-02");
    Ok(Output {
        count: input
            .extract
            .users
            .len()
            .min(input.limit.unwrap_or(usize::MAX)),
    })
}

#[test]
fn input_from_params_and_upstream_output_to_the_file() {
    let f = Files::new();
    assert_eq!(run_with(&f.env(doc()), count), 0);
    assert_eq!(f.read("output.json"), Some(json!({"count": 1})));
    assert_eq!(f.read("error.json"), None);
}

#[test]
fn invalid_input_is_not_retryable_and_names_the_field() {
    let f = Files::new();
    let mut bad = doc();
    bad["upstream"]["extract"]["users"][1]
        .as_object_mut()
        .unwrap()
        .remove("email");
    assert_eq!(run_with(&f.env(bad), count), 1);
    let err = &f.read("error.json").unwrap()["ork_error"];
    assert_eq!(err["retryable"], false);
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("extract.users[1]") && message.contains("missing field `email`"),
        "{message}"
    );
    assert_eq!(f.read("output.json"), None);
}

#[test]
fn retry_and_fail_choose_retryability() {
    for (error, retryable) in [
        (ork::Error::retry("busy"), true),
        (ork::Error::fail("no such table"), false),
    ] {
        let f = Files::new();
        let message = error.message().to_owned();
        assert_eq!(
            run_with(&f.env(doc()), |_: Input| -> ork::Result<Output> {
                Err(error)
            }),
            1
        );
        assert_eq!(
            f.read("error.json"),
            Some(json!({"ork_error": {"message": message, "retryable": retryable}}))
        );
    }
    // `?` on any other error is an ordinary, retryable failure.
    let f = Files::new();
    let code = run_with(&f.env(doc()), |_: Input| -> ork::Result<Output> {
        let n: u32 = "x".parse()?;
        Ok(Output { count: n as usize })
    });
    assert_eq!(code, 1);
    assert_eq!(
        f.read("error.json").unwrap()["ork_error"]["retryable"],
        true
    );
}

#[test]
fn item_upstream_and_params_precedence() {
    #[derive(Deserialize, JsonSchema)]
    struct M {
        extract: u32,
        item: String,
        #[serde(rename = "other-name")]
        other: u32,
    }
    let m: M = build_input(&json!({
        "params": {"extract": 1, "item": "p", "other-name": 7},
        "upstream": {"extract": 2},
        "item": "it"
    }))
    .unwrap();
    assert_eq!((m.extract, m.item.as_str(), m.other), (2, "it", 7));
}

#[test]
fn inputs_mapping_wins_and_follows_paths() {
    #[derive(Deserialize, JsonSchema)]
    struct M {
        people: Vec<User>,
        first_email: String,
        when: String,
        country: String,
        #[serde(default)]
        missing: Option<u32>,
    }
    let m: M = build_input(&json!({
        "params": {"day": "2026-01-02", "people": "ignored"},
        "upstream": {"extract": {"users": [{"id": 1, "email": "a@x"}, {"id": 2, "email": "b@x"}]}, "ex": {}},
        "item": {"country": "FR"},
        "inputs": {
            "people": "extract.users",
            "first_email": "extract.users.0.email",
            "when": "params.day",
            "country": "item.country",
            "missing": "extract.nothing.here"
        }
    }))
    .unwrap();
    assert_eq!(m.people.len(), 2);
    assert_eq!(
        (
            m.first_email.as_str(),
            m.when.as_str(),
            m.country.as_str(),
            m.missing
        ),
        ("a@x", "2026-01-02", "FR", None)
    );
    let err = build_input::<M>(
        &json!({"upstream": {"extract": {}}, "inputs": {"people": "extract.users"}}),
    )
    .err()
    .unwrap();
    assert!(err.contains("people"), "{err}");
}

#[test]
fn input_file_and_item_variable() {
    let f = Files::new();
    std::fs::write(f.path("in.json"), r#"{"params": {"a": 1}}"#).unwrap();
    let env = Env::from_pairs([
        ("ORK_INPUT_FILE", f.path("in.json")),
        ("ORK_ITEM", r#"{"k": 2}"#.to_owned()),
    ]);
    assert_eq!(
        ork::io::read_input(&env).unwrap(),
        json!({"params": {"a": 1}, "upstream": {}, "item": {"k": 2}})
    );
}

#[test]
fn context_from_the_environment() {
    let env = Env::from_pairs([
        ("ORK_RUN_ID", "r"),
        ("ORK_WORKFLOW", "w"),
        ("ORK_TASK", "t"),
        ("ORK_TASK_INDEX", "2"),
        ("ORK_TASK_COUNT", "4"),
        ("ORK_ATTEMPT", "3"),
    ]);
    let c = ork::Context::from_env(&env, Some(&json!({"params": {"day": "d"}})));
    assert_eq!(
        (c.run_id.as_str(), c.workflow.as_str(), c.task.as_str()),
        ("r", "w", "t")
    );
    assert_eq!((c.index, c.count, c.attempt), (2, 4, 3));
    assert_eq!(c.params["day"], "d");
}

#[test]
fn schema_has_input_and_output() {
    let s = ork::schema::<Input, Output>();
    assert_eq!(s["input"]["required"], json!(["day", "extract"]), "{s:#}");
    assert_eq!(s["output"]["properties"]["count"]["type"], "integer");
}
