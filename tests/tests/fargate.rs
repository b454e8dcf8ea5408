//! The Fargate executor against moto in server mode, through the real
//! `aws-sdk-ecs` client.
//!
//! The suite starts `python3 -m moto.server` on a free port (needs
//! `pip install 'moto[server]'`), or uses the server at `ORK_MOTO_URL`.
//! ECS calls go through a small shim that only fixes moto's JSON types
//! (see `moto/mod.rs`, the harness shared with `api/tests/mixed_dag.rs`).
//! Every test works on its own cluster and task definition, so they share
//! one server.

use ork_tests::moto;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, DesiredStatus, LaunchType, NetworkMode,
};
use aws_sdk_ecs::Client;
use moto::{default_subnet, ec2, harness, set_ecs_task_steps, xml_texts};
use ork_core::executor::{Callback, Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::AttemptRef;
use ork_core::spec::{ExecutorKind, FargateTarget, TaskSpec};
use ork_executors::ecs_event::STOP_REASON;
use ork_executors::fargate;
use ork_executors::FargateExecutor;
use serde_json::json;
use uuid::Uuid;

const CONTAINER: &str = "app";
const SECURITY_GROUP: &str = "sg-0123456789abcdef0";

// ---------------------------------------------------------------- moto

/// An ECS client configured by the standard chain (so, at the shim).
async fn ecs() -> Client {
    harness();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    Client::new(&config)
}

// ---------------------------------------------------------------- fixtures

/// A cluster and a Fargate task definition of its own.
struct Fixture {
    ecs: Client,
    cluster: String,
    family: String,
    subnet: String,
}

async fn fixture() -> Fixture {
    let ecs = ecs().await;
    let cluster = format!("ork-{}", Uuid::now_v7().simple());
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("CreateCluster");
    let family = format!("{cluster}-worker");
    ecs.register_task_definition()
        .family(&family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name(CONTAINER)
                .image("public.ecr.aws/docker/library/python:3.12-slim")
                .memory(512)
                .essential(true)
                .build(),
        )
        .send()
        .await
        .expect("RegisterTaskDefinition");
    Fixture {
        ecs,
        cluster,
        family,
        subnet: default_subnet().await,
    }
}

impl Fixture {
    fn target(&self) -> FargateTarget {
        FargateTarget {
            cluster: self.cluster.clone(),
            task_definition: self.family.clone(),
            container: CONTAINER.into(),
            subnets: vec![self.subnet.clone()],
            security_groups: vec![SECURITY_GROUP.into()],
            assign_public_ip: true,
            cpu: Some(512),
            memory: Some(1024),
        }
    }

    fn spec(&self) -> TaskSpec {
        TaskSpec {
            executor: ExecutorKind::Fargate,
            command: Some("python".into()),
            args: vec!["load.py".into(), "--day".into(), "2024-05-01".into()],
            env: BTreeMap::from([
                ("TABLE".into(), "events".into()),
                // The worker contract wins over the task's own env.
                ("ORK_TASK_INDEX".into(), "99".into()),
            ]),
            fargate: Some(self.target()),
            ..TaskSpec::default()
        }
    }

    fn request(&self, attempt: AttemptRef, spec: TaskSpec) -> DispatchRequest {
        DispatchRequest {
            batch: 1,
            attempt,
            task_count: 3,
            spec,
            base_dir: None,
            input: json!({"params": {"day": "2024-05-01"}, "upstream": {}}),
            input_file: None,
            input_url: None,
            output_url: None,
            item: None,
            timeout: None,
            callback: Some(Callback {
                url: "https://ork.example.com/v1/complete".into(),
                token: "tok.abc123".into(),
            }),
        }
    }

    async fn describe(&self, arn: &str) -> aws_sdk_ecs::types::Task {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(arn)
            .send()
            .await
            .expect("DescribeTasks");
        out.tasks()
            .iter()
            .find(|t| t.task_arn() == Some(arn))
            .cloned()
            .unwrap_or_else(|| panic!("no task {arn}"))
    }

    async fn list(&self, started_by: Option<&str>, status: DesiredStatus) -> Vec<String> {
        self.ecs
            .list_tasks()
            .cluster(&self.cluster)
            .set_started_by(started_by.map(str::to_owned))
            .desired_status(status)
            .send()
            .await
            .expect("ListTasks")
            .task_arns()
            .to_vec()
    }
}

fn attempt(index: i64, attempt: i64) -> AttemptRef {
    AttemptRef {
        run_id: Uuid::now_v7(),
        workflow: "etl".into(),
        version: 1,
        task_id: Uuid::now_v7(),
        name: "load".into(),
        task_index: index,
        attempt,
    }
}

fn started(d: Dispatch) -> String {
    match d {
        Dispatch::Started { execution_id } => execution_id,
        other => panic!("expected Started, got {other:?}"),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn dispatch_runs_the_task_with_the_attempts_overrides() {
    let fx = fixture().await;
    let exec = FargateExecutor::from_env().await.expect("AWS credentials");
    let a = attempt(2, 1);
    let arn = started(
        exec.dispatch(&fx.request(a.clone(), fx.spec()))
            .await
            .unwrap(),
    );
    assert!(arn.contains(&format!(":task/{}/", fx.cluster)), "{arn}");

    let task = fx.describe(&arn).await;
    assert_eq!(task.launch_type(), Some(&LaunchType::Fargate));
    assert_eq!(task.started_by(), Some(fargate::started_by(&a).as_str()));
    let overrides = task.overrides().expect("overrides");
    assert_eq!(overrides.cpu(), Some("512"));
    assert_eq!(overrides.memory(), Some("1024"));
    let [container] = overrides.container_overrides() else {
        panic!("one container override: {overrides:?}");
    };
    assert_eq!(container.name(), Some(CONTAINER));
    assert_eq!(
        container.command(),
        ["python", "load.py", "--day", "2024-05-01"]
    );
    let env: HashMap<&str, &str> = container
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap(), kv.value().unwrap()))
        .collect();
    assert_eq!(
        env.len(),
        container.environment().len(),
        "no duplicate names"
    );
    assert_eq!(env["ORK_CALLBACK_TOKEN"], "tok.abc123");
    assert_eq!(
        env["ORK_CALLBACK_URL"],
        "https://ork.example.com/v1/complete"
    );
    assert_eq!(env["ORK_TASK_INDEX"], "2");
    assert_eq!(env["ORK_TASK_COUNT"], "3");
    assert_eq!(env["ORK_ATTEMPT"], "1");
    assert_eq!(env["ORK_RUN_ID"], a.run_id.to_string());
    assert_eq!(env["ORK_TASK"], "load");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(env["ORK_INPUT"]).unwrap(),
        json!({"params": {"day": "2024-05-01"}, "upstream": {}})
    );
    assert_eq!(env["TABLE"], "events");
    // The awsvpc configuration reached ECS: moto attaches an ENI in the subnet.
    let subnet = task
        .attachments()
        .iter()
        .flat_map(|att| att.details())
        .find(|d| d.name() == Some("subnetId"))
        .and_then(|d| d.value());
    assert_eq!(subnet, Some(fx.subnet.as_str()));
    let eni = task
        .attachments()
        .iter()
        .flat_map(|att| att.details())
        .find(|d| d.name() == Some("networkInterfaceId"))
        .and_then(|d| d.value())
        .expect("an ENI");
    let xml = ec2(&format!(
        "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}"
    ))
    .await;
    assert_eq!(xml_texts(&xml, "groupId"), [SECURITY_GROUP], "{xml}");

    // Without `command`, `args` alone override the command…
    let mut spec = fx.spec();
    spec.command = None;
    spec.args = vec!["--full-refresh".into()];
    let arn = started(
        exec.dispatch(&fx.request(attempt(0, 1), spec.clone()))
            .await
            .unwrap(),
    );
    let task = fx.describe(&arn).await;
    let container = &task.overrides().unwrap().container_overrides()[0];
    assert_eq!(container.command(), ["--full-refresh"]);

    // …and with neither the definition's command stays; no cpu/memory either.
    spec.args.clear();
    let target = spec.fargate.as_mut().unwrap();
    target.cpu = None;
    target.memory = None;
    let arn = started(
        exec.dispatch(&fx.request(attempt(0, 1), spec))
            .await
            .unwrap(),
    );
    let task = fx.describe(&arn).await;
    let overrides = task.overrides().unwrap();
    assert!(overrides.container_overrides()[0].command().is_empty());
    assert_eq!(overrides.cpu(), None);
    assert_eq!(overrides.memory(), None);
}

#[tokio::test]
async fn a_repeated_dispatch_of_an_attempt_starts_no_second_task() {
    let fx = fixture().await;
    let exec = FargateExecutor::new(fx.ecs.clone());
    let a = attempt(0, 1);
    let req = fx.request(a.clone(), fx.spec());
    let first = started(exec.dispatch(&req).await.unwrap());
    let again = started(exec.dispatch(&req).await.unwrap());
    assert_eq!(first, again);
    let by = fargate::started_by(&a);
    assert_eq!(
        fx.list(Some(&by), DesiredStatus::Running).await,
        std::slice::from_ref(&first)
    );
    assert_eq!(fx.list(None, DesiredStatus::Running).await.len(), 1);

    // Still one task once it is stopped: a stopped task is found too.
    exec.cancel(&a, &first).await.unwrap();
    let after_stop = started(exec.dispatch(&req).await.unwrap());
    assert_eq!(after_stop, first);
    assert!(fx.list(None, DesiredStatus::Running).await.is_empty());
    assert_eq!(
        fx.list(None, DesiredStatus::Stopped).await,
        std::slice::from_ref(&first)
    );

    // The next attempt of the same task is a new task.
    let next = AttemptRef { attempt: 2, ..a };
    let second = started(
        exec.dispatch(&fx.request(next.clone(), fx.spec()))
            .await
            .unwrap(),
    );
    assert_ne!(second, first);
    assert_eq!(
        fx.list(Some(&fargate::started_by(&next)), DesiredStatus::Running)
            .await,
        [second]
    );
    assert_eq!(fx.list(None, DesiredStatus::Running).await.len(), 1);
}

#[tokio::test]
async fn cancel_stops_the_task_with_a_reason() {
    let fx = fixture().await;
    let exec = FargateExecutor::new(fx.ecs.clone());
    let a = attempt(0, 1);
    let arn = started(
        exec.dispatch(&fx.request(a.clone(), fx.spec()))
            .await
            .unwrap(),
    );

    exec.cancel(&a, &arn).await.unwrap();
    let task = fx.describe(&arn).await;
    assert_eq!(task.last_status(), Some("STOPPED"));
    assert_eq!(task.desired_status(), Some("STOPPED"));
    assert_eq!(task.stopped_reason(), Some(STOP_REASON));
    assert_eq!(STOP_REASON, "cancelled by ork");

    // Stopping a stopped task is no error.
    exec.cancel(&a, &arn).await.unwrap();
    // moto reports exit code 0 for every container, so the poll of a
    // cancelled task reads as a success there.
    assert_eq!(
        exec.poll(&a, &arn).await.unwrap(),
        Some(Outcome::success(None))
    );
}

#[tokio::test]
async fn poll_is_none_until_the_task_stops() {
    let fx = fixture().await;
    let exec = FargateExecutor::new(fx.ecs.clone());
    // moto moves a task one state (RUNNING, DEACTIVATING, STOPPING,
    // DEPROVISIONING, STOPPED) per `times` DescribeTasks of it; with 3 the
    // first two describes of a task still see RUNNING.
    set_ecs_task_steps(3).await;
    let a = attempt(0, 1);
    let arn = started(
        exec.dispatch(&fx.request(a.clone(), fx.spec()))
            .await
            .unwrap(),
    );
    assert_eq!(fx.describe(&arn).await.last_status(), Some("RUNNING"));
    assert_eq!(exec.poll(&a, &arn).await.unwrap(), None, "RUNNING");

    let mut polls = 1;
    let outcome = loop {
        if let Some(outcome) = exec.poll(&a, &arn).await.unwrap() {
            break outcome;
        }
        polls += 1;
        assert!(polls < 50, "moto never stopped the task");
    };
    set_ecs_task_steps(1).await;
    assert!(polls >= 3, "stopped after {polls} polls");
    assert_eq!(outcome, Outcome::success(None));
    assert_eq!(fx.describe(&arn).await.last_status(), Some("STOPPED"));

    // A task ECS does not know is an error, not an end.
    let unknown = arn.rsplit_once('/').unwrap().0.to_owned() + "/0123456789abcdef0123456789abcdef";
    let err = exec.poll(&a, &unknown).await.unwrap_err();
    assert!(err.message().contains("does not know task"), "{err}");
}

#[tokio::test]
async fn run_task_failures_are_clear_errors() {
    let fx = fixture().await;
    let exec = FargateExecutor::new(fx.ecs.clone());

    let mut spec = fx.spec();
    spec.fargate.as_mut().unwrap().cluster = "no-such-cluster".into();
    let err = exec
        .dispatch(&fx.request(attempt(0, 1), spec))
        .await
        .unwrap_err();
    // The look-up for an earlier start of the attempt is the first call to fail.
    assert!(matches!(err, ExecutorError::Permanent(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "ECS ListTasks on cluster \"no-such-cluster\" failed: \
         ClusterNotFoundException: Cluster not found."
    );

    let mut spec = fx.spec();
    spec.fargate.as_mut().unwrap().task_definition = "no-such-family".into();
    let err = exec
        .dispatch(&fx.request(attempt(0, 1), spec))
        .await
        .unwrap_err();
    let prefix = format!(
        "ECS RunTask of \"no-such-family\" on cluster {:?} failed: ClientException: ",
        fx.cluster
    );
    assert!(matches!(err, ExecutorError::Permanent(_)), "{err:?}");
    assert!(err.message().starts_with(&prefix), "{err}");

    let mut spec = fx.spec();
    spec.fargate.as_mut().unwrap().subnets = vec!["subnet-00000000000000000".into()];
    let err = exec
        .dispatch(&fx.request(attempt(0, 1), spec))
        .await
        .unwrap_err();
    assert!(
        err.message().ends_with(
            "failed: InvalidSubnetID.NotFound: The subnet ID 'subnet-00000000000000000' does not exist"
        ),
        "{err}"
    );

    let mut spec = fx.spec();
    spec.fargate = None;
    let err = exec
        .dispatch(&fx.request(attempt(0, 1), spec))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::Permanent(_)), "{err:?}");
    assert!(err.message().contains("`fargate:`"), "{err}");

    assert!(fx.list(None, DesiredStatus::Running).await.is_empty());
}

#[tokio::test]
async fn errors_without_credentials_or_a_connection_are_one_line() {
    let fx = fixture().await;
    let no_credentials = aws_sdk_ecs::Config::builder()
        .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
        .region(aws_sdk_ecs::config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let refused = aws_sdk_ecs::Config::builder()
        .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
        .region(aws_sdk_ecs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ecs::config::Credentials::for_tests())
        .endpoint_url("http://127.0.0.1:9")
        .build();
    for config in [no_credentials, refused] {
        let exec = FargateExecutor::new(Client::from_conf(config));
        let err = exec
            .dispatch(&fx.request(attempt(0, 1), fx.spec()))
            .await
            .unwrap_err();
        let message = err.message();
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(!message.contains("SdkBody"), "no debug dump: {message}");
        assert!(message.len() < 400, "{} bytes: {message}", message.len());
    }
}
