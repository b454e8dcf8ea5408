//! The Cloud Run Jobs executor against a fake Cloud Run Admin API v2, with
//! tokens from a local OAuth2 endpoint through gcp_auth's real
//! service-account path (a key file with a real RSA key, a signed JWT).
//! No request leaves 127.0.0.1.

use ork_tests::fake_cloudrun;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fake_cloudrun::{FakeCloudRun, CLIENT_EMAIL, SCOPE};
use ork_core::executor::{Callback, Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::AttemptRef;
use ork_core::retry::Backoff;
use ork_core::spec::{CloudRunTarget, ExecutorKind, TaskSpec};
use ork_executors::CloudRunExecutor;
use serde_json::{json, Value};
use tempfile::TempDir;
use uuid::Uuid;

const PROJECT: &str = "ork-test-project";
const REGION: &str = "europe-west1";

/// A fake with the job `etl` and an executor using it, authenticated by a
/// service-account key file whose `token_uri` is the fake.
struct Setup {
    fake: FakeCloudRun,
    executor: CloudRunExecutor,
    _dir: TempDir,
}

async fn setup() -> Setup {
    setup_with(Backoff::new(
        4,
        Duration::from_millis(1),
        Duration::from_millis(1),
    ))
    .await
}

async fn setup_with(retry: Backoff) -> Setup {
    let fake = FakeCloudRun::start().await;
    fake.add_job(PROJECT, REGION, "etl");
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = fake.write_key_file(dir.path());
    let account = gcp_auth::CustomServiceAccount::from_file(&key_file).expect("load key file");
    let executor = CloudRunExecutor::new(fake.url.clone(), Arc::new(account), retry);
    Setup {
        fake,
        executor,
        _dir: dir,
    }
}

fn attempt(task_index: i64) -> AttemptRef {
    AttemptRef {
        run_id: Uuid::now_v7(),
        workflow: "nightly".into(),
        version: 1,
        task_id: Uuid::now_v7(),
        name: "transform".into(),
        task_index,
        attempt: 2,
    }
}

/// Instance `task_index` of 3 of a `cloudrun` task running `job`.
fn request(job: &str, task_index: i64) -> DispatchRequest {
    DispatchRequest {
        batch: 1,
        attempt: attempt(task_index),
        task_count: 3,
        spec: TaskSpec {
            executor: ExecutorKind::Cloudrun,
            command: Some("python".into()),
            args: vec!["-m".into(), "etl.transform".into()],
            env: BTreeMap::from([
                ("BATCH_SIZE".to_owned(), "500".to_owned()),
                ("MODE".to_owned(), "full".to_owned()),
            ]),
            task_count: 3,
            cloudrun: Some(CloudRunTarget {
                job: job.into(),
                project: PROJECT.into(),
                region: REGION.into(),
            }),
            ..TaskSpec::default()
        },
        base_dir: None,
        input: json!({"params": {"day": "2024-05-01"}, "upstream": {}}),
        input_file: None,
        input_url: None,
        output_url: None,
        item: None,
        timeout: Some(Duration::from_secs(90)),
        callback: Some(Callback {
            url: "https://ork.example.com/on-task-complete".into(),
            token: "cb-token-123".into(),
        }),
    }
}

fn started(dispatch: Dispatch) -> String {
    match dispatch {
        Dispatch::Started { execution_id } => execution_id,
        other => panic!("expected Started, got {other:?}"),
    }
}

/// The `env` of the first container override, as a map.
fn env_of(body: &Value) -> BTreeMap<String, String> {
    let env = body["overrides"]["containerOverrides"][0]["env"]
        .as_array()
        .expect("env is a list");
    let map: BTreeMap<String, String> = env
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_owned(),
                e["value"].as_str().expect("value").to_owned(),
            )
        })
        .collect();
    assert_eq!(map.len(), env.len(), "duplicate names in {env:?}");
    map
}

fn run_path(job: &str) -> String {
    format!("/v2/projects/{PROJECT}/locations/{REGION}/jobs/{job}:run")
}

#[tokio::test]
async fn dispatch_runs_the_job_with_the_worker_contract() {
    let s = setup().await;
    let req = request("etl", 2);

    let execution_id = started(s.executor.dispatch(&req).await.expect("dispatch"));

    // The execution id is the Execution's name from the operation metadata.
    assert_eq!(s.fake.executions(), vec![execution_id.clone()]);
    assert!(
        execution_id.starts_with(&format!(
            "projects/{PROJECT}/locations/{REGION}/jobs/etl/executions/etl-"
        )),
        "{execution_id}"
    );

    let requests = s.fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let run = &requests[0];
    assert_eq!(run.method, "POST");
    assert_eq!(run.path, run_path("etl"));

    // The bearer token is the one the token endpoint issued, obtained with
    // a JWT for this service account and the cloud-platform scope.
    let issued = s.fake.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(
        run.authorization.as_deref(),
        Some(format!("Bearer {}", issued[0]).as_str())
    );
    let grants = s.fake.token_grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(
        grants[0].grant_type,
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(grants[0].jwt_header["alg"], "RS256");
    assert_eq!(grants[0].claims["iss"], CLIENT_EMAIL);
    assert_eq!(grants[0].claims["scope"], SCOPE);
    assert_eq!(grants[0].claims["aud"], s.fake.token_uri().as_str());

    // RunJobRequest: one task, command then args, worker env + task env.
    let body = run.body.as_ref().expect("a JSON body");
    let overrides = &body["overrides"];
    assert_eq!(overrides["taskCount"], 1);
    assert_eq!(overrides["timeout"], "90s");
    let containers = overrides["containerOverrides"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(
        containers[0]["args"],
        json!(["python", "-m", "etl.transform"])
    );
    let env = env_of(body);
    let a = &req.attempt;
    let expected = BTreeMap::from([
        ("ORK_RUN_ID", a.run_id.to_string()),
        ("ORK_WORKFLOW", "nightly".to_owned()),
        ("ORK_TASK", "transform".to_owned()),
        ("ORK_TASK_INDEX", "2".to_owned()),
        ("ORK_TASK_COUNT", "3".to_owned()),
        ("ORK_ATTEMPT", "2".to_owned()),
        ("ORK_INPUT", req.input.to_string()),
        (
            "ORK_CALLBACK_URL",
            "https://ork.example.com/on-task-complete".to_owned(),
        ),
        ("ORK_CALLBACK_TOKEN", "cb-token-123".to_owned()),
        ("BATCH_SIZE", "500".to_owned()),
        ("MODE", "full".to_owned()),
    ]);
    let expected: BTreeMap<String, String> = expected
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(env, expected);
    // The worker contract comes first, then the task's env.
    assert_eq!(
        overrides["containerOverrides"][0]["env"][0]["name"],
        "ORK_RUN_ID"
    );

    // The execution the fake created carries the overrides.
    let execution = s.fake.execution(&execution_id).unwrap();
    assert_eq!(execution["taskCount"], 1);
    assert_eq!(
        execution["template"]["template"]["containers"][0]["args"],
        json!(["python", "-m", "etl.transform"])
    );
}

#[tokio::test]
async fn dispatch_without_callback_command_or_timeout() {
    let s = setup().await;
    let mut req = request("etl", 0);
    req.callback = None;
    req.timeout = None;
    req.spec.command = None;
    // A task variable named like a contract one: the contract wins.
    req.spec
        .env
        .insert("ORK_TASK_INDEX".to_owned(), "99".to_owned());

    started(s.executor.dispatch(&req).await.expect("dispatch"));
    started(s.executor.dispatch(&req).await.expect("second dispatch"));

    let requests = s.fake.requests();
    assert_eq!(requests.len(), 2);
    let body = requests[0].body.as_ref().unwrap();
    let overrides = &body["overrides"];
    assert!(overrides.get("timeout").is_none(), "{body}");
    assert_eq!(
        overrides["containerOverrides"][0]["args"],
        json!(["-m", "etl.transform"])
    );
    let env = env_of(body);
    assert_eq!(env["ORK_TASK_INDEX"], "0");
    assert_eq!(env["BATCH_SIZE"], "500");
    assert!(!env.contains_key("ORK_CALLBACK_URL"), "{env:?}");
    assert!(!env.contains_key("ORK_CALLBACK_TOKEN"), "{env:?}");

    // The token is cached by gcp_auth: one grant for both calls.
    assert_eq!(s.fake.token_grants().len(), 1);
    assert_eq!(requests[0].authorization, requests[1].authorization);
}

#[tokio::test]
async fn sub_second_timeouts_round_up() {
    let s = setup().await;
    let mut req = request("etl", 0);
    req.timeout = Some(Duration::from_millis(1500));
    started(s.executor.dispatch(&req).await.expect("dispatch"));
    let body = s.fake.requests()[0].body.clone().unwrap();
    assert_eq!(body["overrides"]["timeout"], "2s");
}

#[tokio::test]
async fn throttling_and_unavailability_are_retried() {
    let s = setup().await;
    s.fake.fail_next_runs(&[429, 503]);

    let execution_id = started(
        s.executor
            .dispatch(&request("etl", 0))
            .await
            .expect("dispatch succeeds on the third try"),
    );

    let requests = s.fake.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests.iter().all(|r| r.path == run_path("etl")));
    // The same request each time.
    assert_eq!(requests[0].body, requests[2].body);
    assert_eq!(s.fake.executions(), vec![execution_id]);
}

#[tokio::test]
async fn retries_give_up_after_max_retries() {
    let s = setup_with(Backoff::new(
        2,
        Duration::from_millis(1),
        Duration::from_millis(1),
    ))
    .await;
    s.fake.fail_next_runs(&[503, 500, 503, 503]);

    let err = s
        .executor
        .dispatch(&request("etl", 0))
        .await
        .expect_err("still unavailable");

    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Cloud Run jobs.run failed after 3 tries: 503 UNAVAILABLE: \
         The service is currently unavailable."
    );
    assert_eq!(s.fake.requests().len(), 3);
    assert!(s.fake.executions().is_empty());
}

#[tokio::test]
async fn permission_denied_fails_at_once_with_googles_message() {
    let s = setup().await;

    let err = s
        .executor
        .dispatch(&request("forbidden", 0))
        .await
        .expect_err("forbidden");

    assert!(
        matches!(err, ExecutorError::Permanent(_)),
        "a 403 is permanent: {err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "Cloud Run jobs.run failed: 403 PERMISSION_DENIED: Permission 'run.jobs.run' \
             denied on resource 'projects/{PROJECT}/locations/{REGION}/jobs/forbidden' \
             (or resource may not exist)."
        )
    );
    assert_eq!(s.fake.requests().len(), 1, "a 403 is not retried");
}

#[tokio::test]
async fn unknown_job_fails_with_not_found() {
    let s = setup().await;

    let err = s
        .executor
        .dispatch(&request("no-such-job", 0))
        .await
        .expect_err("unknown job");

    assert!(matches!(err, ExecutorError::Permanent(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "Cloud Run jobs.run failed: 404 NOT_FOUND: Resource 'no-such-job' of kind 'JOB' \
             in region '{REGION}' in project '{PROJECT}' does not exist."
        )
    );
    assert_eq!(s.fake.requests().len(), 1, "a 404 is not retried");
}

#[tokio::test]
async fn a_task_without_cloudrun_block_is_refused() {
    let s = setup().await;
    let mut req = request("etl", 0);
    req.spec.cloudrun = None;
    let err = s.executor.dispatch(&req).await.expect_err("no target");
    assert!(matches!(err, ExecutorError::Permanent(_)), "{err:?}");
    assert!(err.message().contains("`cloudrun:`"), "{err}");
    assert!(s.fake.requests().is_empty());
}

#[tokio::test]
async fn token_endpoint_refusal_is_reported() {
    let s = setup().await;
    s.fake.reject_token_requests();

    let err = s
        .executor
        .dispatch(&request("etl", 0))
        .await
        .expect_err("no token");

    assert!(
        err.message()
            .starts_with("Cloud Run jobs.run failed: cannot get a Google access token"),
        "{err}"
    );
    assert!(s.fake.requests().is_empty(), "no API call without a token");
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    let fake = FakeCloudRun::start().await;
    let dir = tempfile::tempdir().unwrap();
    let account =
        gcp_auth::CustomServiceAccount::from_file(fake.write_key_file(dir.path())).unwrap();
    // Nothing listens on port 1 of the loopback: connection refused.
    let executor = CloudRunExecutor::new(
        "http://127.0.0.1:1/".into(),
        Arc::new(account),
        Backoff::new(2, Duration::from_millis(1), Duration::from_millis(1)),
    );
    assert_eq!(executor.endpoint(), "http://127.0.0.1:1");

    let err = executor
        .dispatch(&request("etl", 0))
        .await
        .expect_err("refused");
    println!("{err}");

    assert!(err.is_transient(), "{err:?}");
    assert!(
        err.message()
            .starts_with("Cloud Run jobs.run failed after 3 tries: "),
        "{err}"
    );
}

#[tokio::test]
async fn poll_follows_the_execution() {
    let s = setup().await;
    let a = attempt(0);
    let first = started(s.executor.dispatch(&request("etl", 0)).await.unwrap());
    let second = started(s.executor.dispatch(&request("etl", 1)).await.unwrap());

    // Just created (pending), then running: not ended.
    assert_eq!(s.executor.poll(&a, &first).await.unwrap(), None);
    s.fake.set_running(&first);
    assert_eq!(s.executor.poll(&a, &first).await.unwrap(), None);

    s.fake.set_succeeded(&first);
    assert_eq!(
        s.executor.poll(&a, &first).await.unwrap(),
        Some(Outcome::success(None))
    );

    s.fake.set_running(&second);
    s.fake.set_failed(
        &second,
        "Task etl-x0002-0 failed with message: The container exited with a non-zero exit code.",
    );
    let outcome = s.executor.poll(&a, &second).await.unwrap().expect("ended");
    assert!(!outcome.success);
    let error = outcome.error.unwrap();
    assert!(
        error.starts_with(
            "NON_ZERO_EXIT_CODE: Task etl-x0002-0 failed with message: \
             The container exited with a non-zero exit code."
        ),
        "{error}"
    );
    assert!(
        error.contains("(logs: https://console.cloud.google.com/"),
        "{error}"
    );

    let gets: Vec<_> = s
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 4);
    assert_eq!(gets[0].path, format!("/v2/{first}"));
    assert_eq!(gets[3].path, format!("/v2/{second}"));
    assert!(gets[0].authorization.is_some());
}

#[tokio::test]
async fn poll_of_an_unknown_execution_is_an_error() {
    let s = setup().await;
    let a = attempt(0);
    let missing = format!("projects/{PROJECT}/locations/{REGION}/jobs/etl/executions/etl-gone");
    let err = s.executor.poll(&a, &missing).await.expect_err("404");
    assert_eq!(
        err.to_string(),
        "Cloud Run executions.get failed: 404 NOT_FOUND: \
         Resource 'etl-gone' of kind 'EXECUTION' does not exist."
    );

    // Ids that are not execution names never reach the API.
    for bad in ["pid:1234", "projects/p/../../x", ""] {
        let err = s.executor.poll(&a, bad).await.expect_err("refused");
        assert!(
            err.message().contains("is not a Cloud Run execution name"),
            "{err}"
        );
    }
    assert_eq!(s.fake.requests().len(), 1);
}

#[tokio::test]
async fn cancel_posts_to_cancel() {
    let s = setup().await;
    let a = attempt(0);
    let execution_id = started(s.executor.dispatch(&request("etl", 0)).await.unwrap());
    s.fake.set_running(&execution_id);

    s.executor.cancel(&a, &execution_id).await.expect("cancel");

    let last = s.fake.requests().pop().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, format!("/v2/{execution_id}:cancel"));
    assert!(last.authorization.unwrap().starts_with("Bearer ya29."));

    let outcome = s.executor.poll(&a, &execution_id).await.unwrap().unwrap();
    assert!(!outcome.success);
    assert!(
        outcome
            .error
            .as_deref()
            .unwrap()
            .starts_with("CANCELLED: The execution was cancelled."),
        "{outcome:?}"
    );

    // Cancelling again (already finished: 400 FAILED_PRECONDITION) or an
    // execution that is gone (404) is not an error.
    s.executor
        .cancel(&a, &execution_id)
        .await
        .expect("second cancel");
    let gone = format!("projects/{PROJECT}/locations/{REGION}/jobs/etl/executions/etl-gone");
    s.executor
        .cancel(&a, &gone)
        .await
        .expect("cancel of a gone execution");
    let cancels = s
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(":cancel"))
        .count();
    assert_eq!(cancels, 3);
}

#[tokio::test]
async fn cancel_after_success_is_not_an_error() {
    let s = setup().await;
    let a = attempt(0);
    let execution_id = started(s.executor.dispatch(&request("etl", 0)).await.unwrap());
    s.fake.set_succeeded(&execution_id);
    s.executor.cancel(&a, &execution_id).await.expect("cancel");
    assert_eq!(
        s.executor.poll(&a, &execution_id).await.unwrap(),
        Some(Outcome::success(None))
    );
}

/// `from_env` with no usable credentials, run in a child process of this
/// test binary so that its environment (GOOGLE_APPLICATION_CREDENTIALS at a
/// missing file, HOME an empty directory) does not leak into other tests.
///
/// With GOOGLE_APPLICATION_CREDENTIALS set, gcp_auth 0.12 uses that file and
/// stops there on error, so it never probes the metadata server (whose URL
/// it hard-codes as metadata.google.internal, ignoring GCE_METADATA_HOST).
/// The case with nothing set at all would probe it, so it is not run here;
/// its message is checked by a unit test in `executor/cloudrun.rs`.
#[test]
fn from_env_without_credentials_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("missing-key.json");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "from_env_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ORK_CLOUDRUN_FROM_ENV_CHILD", "1")
        .env("GOOGLE_APPLICATION_CREDENTIALS", &missing)
        .env("HOME", home.path())
        .env("GCE_METADATA_HOST", "127.0.0.1:1")
        .env("GCE_METADATA_IP", "127.0.0.1:1")
        .env("CLOUDSDK_CONFIG", home.path())
        .env("PATH", home.path())
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run:\n{stdout}"
    );
}

#[tokio::test]
async fn from_env_child() {
    if std::env::var_os("ORK_CLOUDRUN_FROM_ENV_CHILD").is_none() {
        return; // Only meaningful in the child process above.
    }
    let missing = std::env::var("GOOGLE_APPLICATION_CREDENTIALS").unwrap();
    let err = CloudRunExecutor::from_env()
        .await
        .expect_err("there are no credentials");
    println!("from_env error: {err}");
    assert!(matches!(err, ExecutorError::NotConfigured(_)), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{err}");
    assert!(err.contains(&missing), "{err}");
    assert!(err.contains("service-account key file"), "{err}");
    assert!(
        err.contains("failed to open application credentials file"),
        "{err}"
    );
}
