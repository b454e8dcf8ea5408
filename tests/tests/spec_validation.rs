//! Spec parsing and validation: every rejected spec must say what is wrong
//! and on which line, and every accepted form must mean what it says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ork_core::spec::{self, ExecutorKind, RetryPolicy, SpecError, WorkflowSpec};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/spec")
        .join(name)
}

fn parse(yaml: &str) -> WorkflowSpec {
    spec::parse_str(yaml, None).unwrap_or_else(|e| panic!("should parse: {e}"))
}

/// Asserts that `yaml` is rejected on `line` with a message containing `msg`.
#[track_caller]
fn rejects(yaml: &str, line: usize, msg: &str) -> SpecError {
    let err = spec::parse_str(yaml, None).expect_err("should be rejected");
    assert!(
        err.message.contains(msg),
        "message {:?} lacks {msg:?}",
        err.message
    );
    assert_eq!(err.line, Some(line), "wrong line for {err}");
    err
}

#[track_caller]
fn rejects_file(name: &str, line: usize, msg: &str) -> SpecError {
    let path = fixture(name);
    let err = spec::load_file(&path).expect_err("should be rejected");
    assert!(
        err.message.contains(msg),
        "message {:?} lacks {msg:?}",
        err.message
    );
    assert_eq!(err.line, Some(line), "wrong line for {err}");
    assert_eq!(err.file.as_deref(), Some(path.as_path()));
    assert!(
        err.to_string()
            .starts_with(&format!("{}:{line}: ", path.display())),
        "{err}"
    );
    err
}

// ---- rejected specs -------------------------------------------------------

#[test]
fn empty_workflow_name() {
    rejects(
        "name: ''\ntasks:\n  a: {executor: noop}\n",
        1,
        "workflow name is empty",
    );
}

#[test]
fn no_tasks() {
    rejects("name: x\ntasks: {}\n", 2, r#"workflow "x" has no tasks"#);
    rejects("name: x\n\ntasks:\n", 3, "has no tasks");
}

#[test]
fn empty_task_name() {
    rejects(
        "name: x\ntasks:\n  a: {executor: noop}\n  \"\": {executor: noop}\n",
        4,
        "task name is empty",
    );
}

#[test]
fn task_name_with_bad_characters() {
    rejects(
        "name: x\ntasks:\n  ok_1.a-b: {executor: noop}\n  \"load data\":\n    executor: noop\n",
        4,
        r#"task name "load data" may only contain letters, digits"#,
    );
    rejects("name: x\ntasks:\n  a/b: {executor: noop}\n", 3, r#""a/b""#);
}

#[test]
fn duplicate_task_name() {
    rejects_file(
        "duplicate_task.yaml",
        9,
        r#"task "extract" is defined twice"#,
    );
}

#[test]
fn unknown_dependency() {
    let err = rejects_file("unknown_dep.yaml", 12, "");
    assert_eq!(
        err.message,
        r#"task "load" depends on unknown task "transfrom""#
    );
    // Flow style: the line of the list.
    rejects(
        "name: x\ntasks:\n  a:\n    executor: noop\n    timeout: 5s\n    depends_on: [b, zz]\n  b: {executor: noop}\n",
        6,
        r#"task "a" depends on unknown task "zz""#,
    );
}

#[test]
fn self_dependency() {
    rejects(
        "name: x\ntasks:\n  a:\n    executor: noop\n  b:\n    executor: noop\n    depends_on:\n      - a\n      - b\n",
        9,
        r#"task "b" depends on itself"#,
    );
}

#[test]
fn cycle() {
    let err = rejects_file("cycle.yaml", 9, "");
    assert_eq!(err.message, "cycle: a -> b -> c -> a");
}

#[test]
fn process_without_command() {
    rejects(
        "name: x\ntasks:\n  a: {executor: noop}\n  b:\n    args: [-c, true]\n",
        4,
        r#"task "b": executor "process" needs a `command`"#,
    );
}

#[test]
fn python_without_file() {
    rejects(
        "name: x\ntasks:\n  train:\n    executor: python\n",
        3,
        r#"task "train": executor "python" needs a `file`"#,
    );
}

#[test]
fn python_file_missing() {
    let err = rejects_file(
        "missing_script.yaml",
        8,
        r#"file "scripts/train.py" not found"#,
    );
    assert!(err.message.contains("fixtures/spec"), "{err}");
    // Without a file there is no base dir to check against.
    let src = std::fs::read_to_string(fixture("missing_script.yaml")).unwrap();
    assert!(spec::parse_str(&src, None).is_ok());
}

#[test]
fn task_count_zero() {
    rejects(
        "name: x\ntasks:\n  a:\n    executor: noop\n    task_count: 0\n",
        5,
        r#"task "a": task_count must be at least 1"#,
    );
}

#[test]
fn too_many_retries() {
    rejects(
        "name: x\ntasks:\n  a:\n    executor: noop\n    retries: 101\n",
        5,
        r#"task "a": retries.count is 101, the maximum is 100"#,
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: noop\n    retries:\n      backoff: 1s\n      count: 1000\n",
        5,
        "retries.count is 1000",
    );
}

#[test]
fn non_retryable_exit_codes() {
    let spec = |codes: &str| {
        format!("name: x\ntasks:\n  a:\n    executor: noop\n    retries: 2\n    non_retryable_exit_codes: {codes}\n")
    };
    let ok = ork_core::spec::parse_str(&spec("[2, 255]"), None).unwrap();
    assert_eq!(ok.tasks["a"].non_retryable_exit_codes, [2, 255]);
    rejects(
        &spec("[0]"),
        6,
        r#"task "a": non_retryable_exit_codes has 0, which is not the exit code of a failure (1 to 255)"#,
    );
    rejects(&spec("[256]"), 6, "has 256, which is not");
    rejects(&spec("[-1]"), 6, "has -1, which is not");
    rejects(
        &spec("[3, 3]"),
        6,
        r#"task "a": non_retryable_exit_codes has 3 twice"#,
    );
    let many = format!(
        "[{}]",
        (1..=65)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    rejects(
        &spec(&many),
        6,
        r#"task "a": non_retryable_exit_codes has 65 entries, the maximum is 64"#,
    );
    rejects(&spec("two"), 6, "non_retryable_exit_codes");
}

#[test]
fn zero_timeout() {
    rejects(
        "name: x\ntasks:\n  a:\n    executor: noop\n    timeout: 0\n",
        5,
        r#"task "a": timeout must be greater than zero"#,
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: noop\n    timeout: 0s\n",
        5,
        "timeout must be",
    );
}

#[test]
fn unknown_executor() {
    let err = rejects_file("unknown_executor.yaml", 4, "unknown variant `docker`");
    for valid in ["process", "python", "noop"] {
        assert!(err.message.contains(valid), "{err}");
    }
}

#[test]
fn unknown_field() {
    rejects(
        "name: x\ntasks:\n  a:\n    executor: process\n    comand: ls\n",
        5,
        "unknown field `comand`",
    );
    rejects(
        "name: x\nschedul: daily\ntasks:\n  a: {command: ls}\n",
        2,
        "unknown field `schedul`",
    );
}

#[test]
fn bad_schedule_and_time_zone() {
    rejects(
        "name: x\nschedule: daily\ntasks:\n  a: {command: ls}\n",
        2,
        "invalid cron schedule \"daily\"",
    );
    rejects(
        "name: x\nschedule: \"0 6 * * *\"\ntimezone: Mars/Olympus\ntasks:\n  a: {command: ls}\n",
        3,
        "unknown time zone \"Mars/Olympus\"",
    );
    rejects(
        "name: x\ntimezone: UTC\ntasks:\n  a: {command: ls}\n",
        2,
        "`timezone` needs a `schedule`",
    );
}

#[test]
fn cloud_executors_need_their_block() {
    rejects(
        "name: x\ntasks:\n  a:\n    executor: cloudrun\n    args: [x]\n",
        3,
        "needs a `cloudrun:` block",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: fargate\n",
        3,
        "needs a `fargate:` block",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    command: ls\n    cloudrun: {job: j, project: p}\n",
        5,
        "a `cloudrun:` block needs `executor: cloudrun`",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: lambda\n    command: ls\n",
        3,
        "needs a `lambda:` block",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: azure\n",
        3,
        "needs an `azure:` block",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    command: ls\n    lambda: {function: f}\n",
        5,
        "a `lambda:` block needs `executor: lambda`",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: lambda\n    lambda:\n      function: \"my fn\"\n",
        6,
        "lambda function \"my fn\" is not a function name or ARN",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: lambda\n    lambda:\n      function: f\n      qualifier: \"v/1\"\n",
        7,
        "lambda qualifier \"v/1\" is not a version or alias",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: azure\n    azure:\n      subscription: s\n      resource_group: \"../x\"\n      job: j\n",
        7,
        "azure resource_group \"../x\" is not a valid name",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: azure\n    azure: {subscription: s, resource_group: g, jobs: j}\n",
        5,
        "jobs",
    );
}

#[test]
fn bad_duration() {
    let err = rejects_file(
        "bad_duration.yaml",
        6,
        r#"invalid duration "10 parsecs": unknown time unit"#,
    );
    assert!(
        !err.message.contains("column"),
        "location left in message: {err}"
    );
    rejects(
        "name: x\ntasks:\n  a:\n    command: ls\n    timeout: -5\n",
        5,
        "negative",
    );
}

#[test]
fn bad_retries() {
    rejects(
        "name: x\ntasks:\n  a:\n    command: ls\n    retries:\n      count: 2\n      backof: 1s\n",
        7,
        "unknown field `backof`, expected one of `count`, `backoff`, `max_backoff`",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    command: ls\n    retries: {count: 2, max_backoff: soon}\n",
        5,
        r#"invalid duration "soon""#,
    );
    rejects(
        "name: x\ntasks:\n  a:\n    command: ls\n    retries: {backoff: 1s}\n",
        5,
        "missing field `count`",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    command: ls\n    retries: lots\n",
        5,
        "a retry count",
    );
}

#[test]
fn syntax_error() {
    rejects(
        "name: x\ntasks:\n  a:\n    command: ls\n   args: []\n",
        5,
        "did not find expected key",
    );
    rejects("name: x\ntasks:\n\ta: {}\n", 3, "cannot start any token");
}

// ---- accepted specs -------------------------------------------------------

#[test]
fn diamond_with_fan_out() {
    let spec = parse(
        "name: diamond\ntasks:\n  top: {executor: noop}\n  left:\n    executor: noop\n    depends_on: [top]\n    task_count: 4\n  right: {executor: noop, depends_on: [top]}\n  bottom:\n    executor: noop\n    depends_on: [left, right]\n",
    );
    assert_eq!(spec.tasks.len(), 4);
    assert_eq!(spec.tasks["left"].task_count, 4);
    assert_eq!(spec.tasks["right"].task_count, 1);
    assert_eq!(spec.tasks["bottom"].depends_on, ["left", "right"]);
    assert_eq!(spec.tasks["top"].executor, ExecutorKind::Noop);
}

#[test]
fn retries_short_and_long_form() {
    let spec = parse(
        "name: r\ntasks:\n  short: {command: ls, retries: 2}\n  long:\n    command: ls\n    retries: {count: 3, backoff: 10s, max_backoff: 1h}\n  partial:\n    command: ls\n    retries:\n      count: 1\n  none: {command: ls}\n",
    );
    let r = |t: &str| spec.tasks[t].retries;
    assert_eq!(
        r("short"),
        RetryPolicy {
            count: 2,
            ..RetryPolicy::default()
        }
    );
    assert_eq!(
        r("long"),
        RetryPolicy {
            count: 3,
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600)
        }
    );
    assert_eq!(r("partial").backoff, Duration::from_secs(1));
    assert_eq!(r("partial").max_backoff, Duration::from_secs(300));
    assert_eq!(r("none"), RetryPolicy::default());
}

#[test]
fn timeouts_in_seconds_or_humantime() {
    let spec = parse(
        "name: t\ntasks:\n  secs: {command: ls, timeout: 600}\n  mins: {command: ls, timeout: 10m}\n  mixed: {command: ls, timeout: 1h 30m}\n  ms: {command: ls, timeout: \"500ms\"}\n  none: {command: ls}\n",
    );
    let t = |n: &str| spec.tasks[n].timeout;
    assert_eq!(t("secs"), Some(Duration::from_secs(600)));
    assert_eq!(t("mins"), Some(Duration::from_secs(600)));
    assert_eq!(t("mixed"), Some(Duration::from_secs(5400)));
    assert_eq!(t("ms"), Some(Duration::from_millis(500)));
    assert_eq!(t("none"), None);
}

#[test]
fn json_round_trip() {
    let mut spec = parse(
        "name: full\ndescription: everything set\ntasks:\n  a:\n    command: sh\n    args: [-c, 'echo $X']\n    env: {X: '1'}\n    timeout: 1m 30s 250ms\n    retries: {count: 3, backoff: 1500ms, max_backoff: 2m}\n    task_count: 3\n  b:\n    executor: python\n    file: b.py\n    depends_on: [a]\n    retries: 1\n  c: {executor: noop, depends_on: [a, b]}\n",
    );
    spec.base_dir = Some(PathBuf::from("/srv/workflows"));
    let json = serde_json::to_string(&spec).unwrap();
    let back: WorkflowSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec, "{json}");
    // Durations are stored readably.
    assert!(json.contains(r#""timeout":"1m 30s 250ms""#), "{json}");
}

#[test]
fn load_file_sets_base_dir_and_finds_scripts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tasks")).unwrap();
    std::fs::write(dir.path().join("tasks/train.py"), "print('hi')\n").unwrap();
    let file = dir.path().join("ml.yaml");
    std::fs::write(
        &file,
        "name: ml\ntasks:\n  train: {executor: python, file: tasks/train.py}\n",
    )
    .unwrap();
    let spec = spec::load_file(&file).unwrap();
    assert_eq!(spec.base_dir.as_deref(), Some(dir.path()));
}

#[test]
fn load_dir_reads_yaml_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "name: second\ntasks:\n  a: {executor: noop}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "name: first\ntasks:\n  a: {executor: noop}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not: [a workflow").unwrap();
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    let names: Vec<_> = spec::load_dir(dir.path())
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["first", "second"]);
}

#[test]
fn load_dir_rejects_same_workflow_twice() {
    let err = spec::load_dir(&fixture("same_name")).expect_err("duplicate name");
    let msg = err.to_string();
    assert!(
        msg.contains("a.yaml") && msg.contains("b.yml") && msg.contains(r#""twin""#),
        "{msg}"
    );
}

#[test]
fn example_workflows_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let specs = spec::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(specs
        .iter()
        .any(|s| s.name == "etl" && s.tasks["transform"].task_count == 4));
}

#[test]
fn error_display() {
    let e = |file: Option<&str>, line| SpecError {
        file: file.map(PathBuf::from),
        line,
        message: "bad".into(),
    };
    assert_eq!(e(Some("w/a.yaml"), Some(3)).to_string(), "w/a.yaml:3: bad");
    assert_eq!(e(Some("w/a.yaml"), None).to_string(), "w/a.yaml: bad");
    assert_eq!(e(None, Some(3)).to_string(), "line 3: bad");
    assert_eq!(e(None, None).to_string(), "bad");
}

/// A spec built in code (as `ork create-workflow` builds one) goes through
/// the same rules when applied: an invalid one is refused and stores nothing.
#[tokio::test]
async fn apply_refuses_an_unvalidated_spec_and_stores_nothing() {
    use std::collections::BTreeMap;

    use ork_core::spec::TaskSpec;

    let db = ork_tests::db::sqlite().await;
    let engine = ork_tests::db::noop_engine(db.store.clone());
    let noop = |deps: &[&str]| TaskSpec {
        executor: ExecutorKind::Noop,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        ..TaskSpec::default()
    };
    let valid = WorkflowSpec {
        name: "built".into(),
        description: None,
        tasks: BTreeMap::from([("a".to_owned(), noop(&[]))]),
        base_dir: None,
        schedule: None,
        timezone: None,
        catchup: false,
        params: BTreeMap::new(),
        concurrency: None,
        rate_limits: BTreeMap::new(),
    };
    let invalid = [
        WorkflowSpec {
            tasks: BTreeMap::from([
                ("a".to_owned(), noop(&["b"])),
                ("b".to_owned(), noop(&["a"])),
            ]),
            ..valid.clone()
        },
        WorkflowSpec {
            tasks: BTreeMap::from([("bad name".to_owned(), noop(&[]))]),
            ..valid.clone()
        },
        WorkflowSpec {
            tasks: BTreeMap::from([(
                "a".to_owned(),
                TaskSpec {
                    task_count: 0,
                    ..noop(&[])
                },
            )]),
            ..valid.clone()
        },
        WorkflowSpec {
            tasks: BTreeMap::from([(
                "a".to_owned(),
                TaskSpec {
                    executor: ExecutorKind::Process,
                    ..TaskSpec::default()
                },
            )]),
            ..valid.clone()
        },
        WorkflowSpec {
            schedule: Some("not a cron".into()),
            ..valid.clone()
        },
    ];
    for spec in &invalid {
        let err = engine
            .apply(spec, None)
            .await
            .expect_err("should be refused");
        assert!(
            matches!(err, ork_core::Error::Spec(_)),
            "not a spec error: {err}"
        );
    }
    assert!(db.store.list_workflows().await.unwrap().is_empty());
    engine
        .apply(&valid, None)
        .await
        .expect("a valid spec applies");
    assert_eq!(db.store.list_workflows().await.unwrap().len(), 1);
}

// ---- limits (Reliability #4, #5, #7) ----------------------------------------

#[test]
fn durations_and_counts_are_bounded() {
    let task = |field: &str| format!("name: x\ntasks:\n  a:\n    executor: noop\n    {field}\n");
    for timeout in ["1e13", "18446744073709551615", "400d"] {
        let err = rejects(
            &task(&format!("timeout: {timeout}")),
            5,
            r#"task "a": timeout is"#,
        );
        assert!(err.message.contains("the maximum is 30days"), "{err}");
    }
    let err = rejects(
        &task("retries: {count: 1, backoff: 1e15, max_backoff: 1e15}"),
        5,
        r#"task "a": retries.backoff is"#,
    );
    assert!(err.message.contains("the maximum is 1day"), "{err}");
    rejects(
        &task("retries: {count: 1, max_backoff: 1e15}"),
        5,
        "retries.max_backoff is",
    );
    let err = rejects(
        &task("task_count: 1000000000"),
        5,
        "task_count is 1000000000",
    );
    assert!(err.message.contains("the maximum is 100000"), "{err}");
    // The instances of all tasks of a run count together.
    let yaml = "name: x\ntasks:\n  a: {executor: noop, task_count: 60000}\n  b: {executor: noop, task_count: 60000}\n";
    let err = spec::parse_str(yaml, None).expect_err("too many instances");
    assert!(err.message.contains("120000 task instances"), "{err}");
    // At the limits, accepted.
    parse(&task("timeout: 30d"));
    parse(&task("task_count: 100000"));
    parse(&task("retries: {count: 100, backoff: 1d, max_backoff: 1d}"));
}

#[test]
fn deep_nesting_is_rejected_before_parsing_and_fast() {
    let started = std::time::Instant::now();
    for yaml in [
        format!("name: x\ntasks: {}", "[".repeat(100_000)),
        format!("name: x\ntasks:\n  a:\n    env: {}", "{a: ".repeat(50_000)),
        // Block style, one level per line.
        (0..100)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect::<String>(),
    ] {
        let err = spec::parse_str(&yaml, Some(Path::new("deep.yaml"))).expect_err("too deep");
        assert!(
            err.message.contains("nested more than 64 levels deep"),
            "{err}"
        );
        assert!(err.to_string().starts_with("deep.yaml:"), "{err}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let big = format!(
        "name: x\n# {}\ntasks:\n  a: {{executor: noop}}\n",
        "x".repeat(1 << 20)
    );
    let err = spec::parse_str(&big, Some(Path::new("big.yaml"))).expect_err("too big");
    assert!(err.message.contains("the limit is 1 MiB"), "{err}");
    assert!(err.to_string().starts_with("big.yaml: "), "{err}");
    // Ordinary nesting is fine.
    parse("name: x\ntasks:\n  a:\n    executor: noop\n    env: {A: '[[[{{{'}\n    args: [\"]]]\", '}}']\n");
}

#[test]
fn nul_characters_are_rejected() {
    rejects("name: \"x\\0y\"\ntasks:\n  a: {executor: noop}\n", 1, "NUL");
    let err = spec::parse_str(
        "name: x\ntasks:\n  a:\n    executor: noop\n    env: {A: \"\\0\"}\n",
        None,
    )
    .expect_err("NUL in env");
    assert!(err.message.contains("NUL"), "{err}");
}

#[test]
fn command_as_a_list_is_the_argv_and_args_are_appended() {
    let spec = parse(
        "name: c\ntasks:\n  a: {command: [sh, -c, 'echo hi']}\n  b: {command: [python3, x.py], args: [--n, '3']}\n  c: {command: ls, args: [-l]}\n",
    );
    assert_eq!(spec.tasks["a"].argv(), ["sh", "-c", "echo hi"]);
    assert_eq!(spec.tasks["b"].argv(), ["python3", "x.py", "--n", "3"]);
    assert_eq!(spec.tasks["c"].argv(), ["ls", "-l"]);
    // The stored form round-trips.
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<WorkflowSpec>(&json).unwrap(), spec);
    rejects(
        "name: c\ntasks:\n  a:\n    command: []\n",
        3,
        "needs a `command`",
    );
}

#[test]
fn foreach_names_a_direct_parent_with_one_instance() {
    let spec = parse(
        "name: f\ntasks:\n  x.y: {executor: noop}\n  e: {executor: noop, depends_on: [x.y], foreach: x.y.users.list}\n",
    );
    let (parent, path) = spec.tasks["e"].foreach_source().unwrap();
    assert_eq!((parent, path), ("x.y", vec!["users", "list"]));
    rejects(
        "name: f\ntasks:\n  a: {executor: noop}\n  e:\n    executor: noop\n    foreach: a\n",
        6,
        "must name a direct parent",
    );
    rejects(
        "name: f\ntasks:\n  a: {executor: noop}\n  e:\n    executor: noop\n    depends_on: [a]\n    foreach: a\n    task_count: 2\n",
        7,
        "foreach and task_count > 1 cannot be combined",
    );
    rejects(
        "name: f\ntasks:\n  a: {executor: noop, task_count: 3}\n  e:\n    executor: noop\n    depends_on: [a]\n    foreach: a\n",
        7,
        "single-instance parent",
    );
}

#[test]
fn kubernetes_blocks_are_checked_where_they_are_written() {
    rejects(
        "name: x\ntasks:\n  a:\n    executor: kubernetes\n",
        3,
        "needs a `kubernetes:` block",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    command: ls\n    kubernetes: {image: busybox}\n",
        5,
        "a `kubernetes:` block needs `executor: kubernetes`",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: kubernetes\n    kubernetes:\n      image: busybox\n      namespace: Not_A_Label\n",
        7,
        "namespace \"Not_A_Label\" is not a DNS label",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: kubernetes\n    kubernetes:\n      image: busybox\n      cpu: 500m\n      memory: lots\n",
        8,
        "memory \"lots\" is not a quantity",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: kubernetes\n    kubernetes:\n      image: busybox\n      tolerations:\n        - {key: k, operator: Maybe}\n",
        8,
        "toleration operator \"Maybe\"",
    );
    rejects(
        "name: x\ntasks:\n  a:\n    executor: kubernetes\n    kubernetes: {image: busybox, colour: blue}\n",
        5,
        "unknown field `colour`",
    );
    let spec = parse(
        "name: x\ntasks:\n  a:\n    executor: kubernetes\n    kubernetes:\n      image: busybox\n      cpu: \"2\"\n      memory: 1.5Gi\n      node_selector: {pool: a}\n",
    );
    let k = spec.tasks["a"].kubernetes.clone().unwrap();
    assert_eq!(spec.tasks["a"].executor, ExecutorKind::Kubernetes);
    assert_eq!(k.cpu.as_deref(), Some("2"));
    assert_eq!(k.memory.as_deref(), Some("1.5Gi"));
    assert_eq!(k.node_selector["pool"], "a");
}

// ---- limits (docs/concurrency.md) ----------------------------------------

#[test]
fn limits_are_checked_with_their_line() {
    rejects(
        "name: w\nconcurrency:\n  on_limit: skip\ntasks:\n  a: {executor: noop}\n",
        2,
        "concurrency: needs `max_runs` or `key`",
    );
    rejects(
        "name: w\nconcurrency:\n  on_limit: skip\n  max_runs: 0\ntasks:\n  a: {executor: noop}\n",
        4,
        "concurrency.max_runs must be at least 1",
    );
    rejects(
        "name: w\nconcurrency:\n  key: \"{{ params.c }}\"\ntasks:\n  a: {executor: noop}\n",
        3,
        "concurrency.key needs a `limit`",
    );
    rejects(
        "name: w\nconcurrency: {max_runs: 100001}\ntasks:\n  a: {executor: noop}\n",
        2,
        "the maximum is 100000",
    );
    rejects(
        "name: w\ntasks:\n  a:\n    executor: noop\n    max_parallel: 0\n",
        5,
        "task \"a\": max_parallel must be at least 1",
    );
    rejects(
        "name: w\ntasks:\n  a:\n    executor: noop\n    concurrency:\n      key: \"{{ run.id }}\"\n      limit: 1\n",
        6,
        "must be `{{ params.NAME }}`",
    );
    rejects(
        "name: w\ntasks:\n  a:\n    executor: noop\n    concurrency:\n      key: k\n      limit: 0\n",
        7,
        "concurrency.limit must be at least 1",
    );
    rejects(
        "name: w\nrate_limits:\n  api: {per_second: 10}\ntasks:\n  a:\n    executor: noop\n    rate_limit:\n      name: openai\n",
        8,
        "rate_limit.name \"openai\" is not declared",
    );
    rejects(
        "name: w\nrate_limits:\n  api: {per_second: 0}\ntasks:\n  a: {executor: noop}\n",
        2,
        "rate_limits.api.per_second is 0",
    );
    rejects(
        "name: w\nconcurrency: {max_runs: 1, on_limit: drop}\ntasks:\n  a: {executor: noop}\n",
        2,
        "unknown variant `drop`",
    );
}

#[test]
fn limits_parse_and_render() {
    let s = parse(
        "name: w\nconcurrency: {max_runs: 2, on_limit: cancel_oldest}\nrate_limits:\n  api: {per_second: 2.5}\ntasks:\n  a:\n    executor: noop\n    max_parallel: 3\n    concurrency: {key: \"c-{{ params.customer }}\", limit: 1}\n    rate_limit: {name: api, cost: 2}\n",
    );
    assert!(s.has_limits());
    let c = s.concurrency.as_ref().unwrap();
    assert_eq!(
        (c.max_runs, c.on_limit),
        (Some(2), spec::OnLimit::CancelOldest)
    );
    let a = &s.tasks["a"];
    assert_eq!(a.max_parallel, Some(3));
    assert_eq!(a.rate_limit.as_ref().map(|r| r.cost), Some(2));
    let key = &a.concurrency.as_ref().unwrap().key;
    assert_eq!(
        spec::render_key(key, &serde_json::json!({"customer": "acme"})),
        "c-acme"
    );
    assert_eq!(
        spec::render_key(key, &serde_json::json!({"customer": 7})),
        "c-7"
    );
}
