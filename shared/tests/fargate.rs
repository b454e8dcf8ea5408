//! The Fargate executor against moto in server mode, through the real
//! `aws-sdk-ecs` client.
//!
//! The suite starts `python3 -m moto.server` on a free port (needs
//! `pip install 'moto[server]'`), or uses the server at `ORK_MOTO_URL`.
//! ECS calls go through a small shim that only fixes moto's JSON types
//! (see [`start_shim`]). Every test works on its own cluster and task
//! definition, so they share one server.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, DesiredStatus, LaunchType, NetworkMode,
};
use aws_sdk_ecs::Client;
use ork_shared::executor::fargate::{self, STOP_REASON};
use ork_shared::executor::{
    Callback, Dispatch, DispatchRequest, Executor, FargateExecutor, Outcome,
};
use ork_shared::model::AttemptRef;
use ork_shared::spec::{ExecutorKind, FargateTarget, TaskSpec};
use serde_json::json;
use uuid::Uuid;

const CONTAINER: &str = "app";
const SECURITY_GROUP: &str = "sg-0123456789abcdef0";

// ---------------------------------------------------------------- moto

/// A moto server this test binary started. Dropping it stops the server;
/// so does the end of the test process, even a killed one (a `static` is
/// never dropped): a watchdog in the launching shell kills moto when its
/// stdin, a pipe from this process, closes.
struct MotoServer {
    url: String,
    shell: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl MotoServer {
    fn start() -> MotoServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::env::temp_dir().join(format!("ork-moto-{port}.log"));
        // fd 3 keeps this process's pipe for the watchdog (a background
        // job's stdin is /dev/null); the shell itself exits with moto, so
        // an early death shows.
        let script = format!(
            "exec 3<&0\n\
             python3 -m moto.server -H 127.0.0.1 -p {port} >'{log}' 2>&1 & pid=$!\n\
             (read _ignored <&3; kill $pid 2>/dev/null; rm -f '{log}') &\n\
             wait $pid",
            log = log.display()
        );
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run sh to start moto");
        let stdin = shell.stdin.take();
        let mut server = MotoServer {
            url: format!("http://127.0.0.1:{port}"),
            shell,
            stdin,
            log,
        };
        server.wait_until_listening(port);
        server
    }

    fn wait_until_listening(&mut self, port: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            let exited = self.shell.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let mut log = String::new();
                let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut log));
                panic!(
                    "moto did not start on port {port} ({}); is `pip install 'moto[server]'` done? \
                     Or set ORK_MOTO_URL.\n{log}",
                    match exited {
                        Some(status) => format!("exited: {status}"),
                        None => "timed out".into(),
                    }
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // EOF on the pipe makes the watchdog kill moto; the shell then exits.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.shell.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// The moto server of the suite; ECS requests go through a shim in front of it.
struct Harness {
    moto: String,
    _server: Option<MotoServer>,
}

/// The server the suite uses (`ORK_MOTO_URL`, or one started on first
/// use) and the shim in front of it. Also points the standard AWS chain at
/// the shim (endpoint, dummy credentials, us-east-1), once, while every
/// other test waits here.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let (moto, server) = match std::env::var("ORK_MOTO_URL") {
            Ok(url) if !url.is_empty() => (url.trim_end_matches('/').to_owned(), None),
            _ => {
                let server = MotoServer::start();
                (server.url.clone(), Some(server))
            }
        };
        let ecs_endpoint = start_shim(moto.clone());
        std::env::set_var("AWS_ENDPOINT_URL", &ecs_endpoint);
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        Harness {
            moto,
            _server: server,
        }
    })
}

fn moto_url() -> &'static str {
    &harness().moto
}

/// A pass-through proxy to moto that fixes one incompatibility: moto
/// writes a task's container `cpu` (always) and `memory` as JSON numbers,
/// where the ECS model (and so the Rust SDK's strict parser) has strings;
/// boto3 tolerates it, `aws-sdk-ecs` fails every RunTask, DescribeTasks
/// and StopTask response. Runs on its own thread and runtime, so that it
/// outlives each test's runtime. Returns its URL.
fn start_shim(moto: String) -> String {
    use axum::body::Bytes;
    use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};

    async fn forward(
        moto: String,
        client: reqwest::Client,
        method: Method,
        uri: Uri,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let resp = match client
            .request(method, format!("{moto}{path}"))
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        };
        let status = resp.status();
        let mut headers = resp.headers().clone();
        for h in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
        ] {
            headers.remove(h);
        }
        let body = resp.bytes().await.unwrap_or_default();
        let body = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(mut json) => {
                stringify_container_sizes(&mut json);
                Bytes::from(json.to_string())
            }
            Err(_) => body,
        };
        (status, headers, body).into_response()
    }

    let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the shim");
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("shim runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let client = local_http();
            let app = axum::Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    forward(moto.clone(), client.clone(), method, uri, headers, body)
                },
            );
            axum::serve(listener, app).await.expect("shim");
        });
    });
    url
}

/// `cpu`, `memory` and `memoryReservation` of every `containers[]` entry,
/// as the strings ECS sends.
fn stringify_container_sizes(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(containers)) = map.get_mut("containers") {
                for c in containers.iter_mut().filter_map(|c| c.as_object_mut()) {
                    for key in ["cpu", "memory", "memoryReservation"] {
                        if let Some(n) = c.get(key).filter(|n| n.is_number()) {
                            let s = n.to_string();
                            c.insert(key.to_owned(), serde_json::Value::String(s));
                        }
                    }
                }
            }
            map.values_mut().for_each(stringify_container_sizes);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(stringify_container_sizes),
        _ => {}
    }
}

/// A plain HTTP client for 127.0.0.1, whatever `HTTP_PROXY` says.
fn local_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// An ECS client configured by the standard chain (so, at the shim).
async fn ecs() -> Client {
    harness();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    Client::new(&config)
}

/// An EC2 query API call to moto, by hand: there is no EC2 SDK crate here.
/// moto does not check signatures; it reads the service from the
/// credential scope.
async fn ec2(params: &str) -> String {
    local_http()
        .post(format!("{}/", moto_url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ec2/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(format!("Version=2016-11-15&{params}"))
        .send()
        .await
        .expect("EC2 query")
        .text()
        .await
        .expect("EC2 response")
}

/// The texts of the `<tag>` elements of an XML document.
fn xml_texts<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once(close.as_str()).map(|(text, _)| text))
        .collect()
}

/// A subnet of moto's default VPC: ECS in moto checks that the first
/// subnet of an awsvpc task exists (security groups may be any id).
async fn default_subnet() -> String {
    static SUBNET: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    SUBNET
        .get_or_init(|| async {
            let xml = ec2("Action=DescribeSubnets").await;
            xml_texts(&xml, "subnetId")
                .first()
                .unwrap_or_else(|| panic!("no subnet in moto's default VPC: {xml}"))
                .to_string()
        })
        .await
        .clone()
}

/// Sets how moto moves ECS tasks through their lifecycle: one state every
/// `times` DescribeTasks of a task (moto's default is 1).
async fn set_ecs_task_steps(times: u32) {
    let resp = local_http()
        .post(format!("{}/moto-api/state-manager/set-transition", moto_url()))
        .body(
            json!({"model_name": "ecs::task", "transition": {"progression": "manual", "times": times}})
                .to_string(),
        )
        .send()
        .await
        .expect("moto state manager");
    assert!(
        resp.status().is_success(),
        "set-transition: {}",
        resp.status()
    );
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
            attempt,
            task_count: 3,
            spec,
            base_dir: None,
            input: json!({"params": {"day": "2024-05-01"}, "upstream": {}}),
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
    let exec = FargateExecutor::from_env().await;
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
    assert!(err.contains("does not know task"), "{err}");
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
    assert_eq!(
        err,
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
    assert!(err.starts_with(&prefix), "{err}");

    let mut spec = fx.spec();
    spec.fargate.as_mut().unwrap().subnets = vec!["subnet-00000000000000000".into()];
    let err = exec
        .dispatch(&fx.request(attempt(0, 1), spec))
        .await
        .unwrap_err();
    assert!(
        err.ends_with(
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
    assert!(err.contains("`fargate:`"), "{err}");

    assert!(fx.list(None, DesiredStatus::Running).await.is_empty());
}
