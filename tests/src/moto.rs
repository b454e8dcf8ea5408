//! A moto server (AWS in a process) for tests that run ECS tasks, with the
//! small proxy that makes its ECS answers readable by `aws-sdk-ecs`.
//!
//! Shared by `shared/tests/fargate.rs` and `api/tests/mixed_dag.rs`, so it
//! names no AWS SDK type: `ork-api` depends on the SDK only through
//! `ork-shared` (`FargateExecutor::from_env`, after [`harness`] has pointed
//! the standard AWS chain at the proxy). ECS calls of the test itself go by
//! hand through [`ecs`] (the JSON 1.1 protocol), EC2 ones through [`ec2`]
//! (the query protocol); moto does not check signatures.
//!
//! `python3 -m moto.server` is started on a free port on first use (needs
//! `pip install 'moto[server]'`), unless `ORK_MOTO_URL` names a server.
// Included by two test crates (ork-shared's and ork-api's), each using a part.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The region every call is made in.
pub const REGION: &str = "us-east-1";

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

/// The moto server of the test binary and the proxy in front of it.
pub struct Harness {
    /// moto itself.
    pub moto: String,
    /// The proxy ECS calls go through (what `AWS_ENDPOINT_URL` names).
    pub ecs: String,
    _server: Option<MotoServer>,
}

/// The server the binary uses (`ORK_MOTO_URL`, or one started on first
/// use) and the proxy in front of it. Also points the standard AWS chain at
/// the proxy (endpoint, dummy credentials, us-east-1), once, while every
/// other caller waits here. Blocks: call it from a blocking context.
pub fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let (moto, server) = match std::env::var("ORK_MOTO_URL") {
            Ok(url) if !url.is_empty() => (url.trim_end_matches('/').to_owned(), None),
            _ => {
                let server = MotoServer::start();
                (server.url.clone(), Some(server))
            }
        };
        let ecs = start_shim(moto.clone());
        std::env::set_var("AWS_ENDPOINT_URL", &ecs);
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
        std::env::set_var("AWS_REGION", REGION);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        Harness {
            moto,
            ecs,
            _server: server,
        }
    })
}

/// [`harness`] from async code, off the runtime's worker threads.
pub async fn harness_async() -> &'static Harness {
    tokio::task::spawn_blocking(harness)
        .await
        .expect("starting moto panicked")
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
        let body = match serde_json::from_slice::<Value>(&body) {
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
pub fn stringify_container_sizes(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(containers)) = map.get_mut("containers") {
                for c in containers.iter_mut().filter_map(|c| c.as_object_mut()) {
                    for key in ["cpu", "memory", "memoryReservation"] {
                        if let Some(n) = c.get(key).filter(|n| n.is_number()) {
                            let s = n.to_string();
                            c.insert(key.to_owned(), Value::String(s));
                        }
                    }
                }
            }
            map.values_mut().for_each(stringify_container_sizes);
        }
        Value::Array(items) => items.iter_mut().for_each(stringify_container_sizes),
        _ => {}
    }
}

/// A plain HTTP client for 127.0.0.1, whatever `HTTP_PROXY` says.
pub fn local_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// One ECS API call by hand (JSON 1.1 protocol), through the proxy: the
/// response as the SDK would read it. Panics unless it is a 2xx.
pub async fn ecs(action: &str, request: Value) -> Value {
    let h = harness_async().await;
    let resp = local_http()
        .post(format!("{}/", h.ecs))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "X-Amz-Target",
            format!("AmazonEC2ContainerServiceV20141113.{action}"),
        )
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/ecs/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .body(request.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("ECS {action}: {e}"));
    let status = resp.status();
    let text = resp.text().await.expect("ECS response");
    assert!(status.is_success(), "ECS {action}: {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ECS {action}: {e}: {text}"))
}

/// An EC2 query API call to moto, by hand. moto reads the service from the
/// credential scope.
pub async fn ec2(params: &str) -> String {
    let h = harness_async().await;
    local_http()
        .post(format!("{}/", h.moto))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/ec2/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
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
pub fn xml_texts<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once(close.as_str()).map(|(text, _)| text))
        .collect()
}

/// A subnet of moto's default VPC: ECS in moto checks that the first
/// subnet of an awsvpc task exists (security groups may be any id).
pub async fn default_subnet() -> String {
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
pub async fn set_ecs_task_steps(times: u32) {
    let h = harness_async().await;
    let resp = local_http()
        .post(format!("{}/moto-api/state-manager/set-transition", h.moto))
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

/// A cluster and a Fargate task definition (one container) of their own,
/// with a subnet to run in.
pub struct EcsFixture {
    pub cluster: String,
    pub family: String,
    pub container: String,
    pub subnet: String,
}

impl EcsFixture {
    pub async fn create(container: &str) -> EcsFixture {
        let cluster = format!("ork-{}", uuid::Uuid::now_v7().simple());
        ecs("CreateCluster", json!({"clusterName": cluster})).await;
        let family = format!("{cluster}-worker");
        ecs(
            "RegisterTaskDefinition",
            json!({
                "family": family,
                "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "cpu": "256",
                "memory": "512",
                "containerDefinitions": [{
                    "name": container,
                    "image": "public.ecr.aws/docker/library/python:3.12-slim",
                    "memory": 512,
                    "essential": true,
                }],
            }),
        )
        .await;
        EcsFixture {
            cluster,
            family,
            container: container.to_owned(),
            subnet: default_subnet().await,
        }
    }

    /// `DescribeTasks` of one task: the task object as ECS returns it.
    pub async fn describe(&self, arn: &str) -> Value {
        let out = ecs(
            "DescribeTasks",
            json!({"cluster": self.cluster, "tasks": [arn]}),
        )
        .await;
        out["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["taskArn"] == arn)
            .cloned()
            .unwrap_or_else(|| panic!("ECS does not know task {arn}: {out}"))
    }

    /// Describes the task until ECS reports it `STOPPED` (moto moves a task
    /// one state per describe: RUNNING, DEACTIVATING, STOPPING,
    /// DEPROVISIONING, STOPPED), and returns that last description.
    pub async fn describe_until_stopped(&self, arn: &str) -> Value {
        for _ in 0..50 {
            let task = self.describe(arn).await;
            if task["lastStatus"] == "STOPPED" {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("ECS never stopped task {arn}");
    }
}

/// The EventBridge event ECS sends when a task reaches `STOPPED`, built
/// from `task` (a `DescribeTasks` task object, which is what an event's
/// `detail` is): the shape of "Amazon ECS task state change events" in the
/// ECS developer guide. Where moto's description lags behind what ECS puts
/// in a stop event (desired status, container states, stop time and code),
/// the event says what ECS would.
pub fn task_state_change_event(task: &Value) -> Value {
    let arn = task["taskArn"].as_str().expect("a task ARN");
    let account = arn.split(':').nth(4).unwrap_or("123456789012");
    let now = chrono::Utc::now();
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut detail = task.clone();
    detail["desiredStatus"] = json!("STOPPED");
    detail["updatedAt"] = json!(stamp);
    if detail.get("stoppedAt").is_none() {
        detail["stoppedAt"] = json!(stamp);
    }
    if detail.get("stopCode").is_none() {
        detail["stopCode"] = json!("EssentialContainerExited");
    }
    for c in detail["containers"].as_array_mut().into_iter().flatten() {
        c["lastStatus"] = json!("STOPPED");
    }
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": account,
        "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": REGION,
        "resources": [arn],
        "detail": detail,
    })
}

/// A payload store (`ORK_PAYLOAD_URL`) in a new S3 bucket of moto's.
pub async fn s3_store() -> ork_core::payload::Remote {
    let h = harness_async().await;
    let bucket = format!("ork-{}", uuid::Uuid::now_v7().simple());
    let resp = local_http()
        .put(format!("{}/{bucket}", h.moto))
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/s3/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .send()
        .await
        .expect("CreateBucket");
    assert!(
        resp.status().is_success(),
        "CreateBucket: {}",
        resp.status()
    );
    let options: Vec<(String, String)> = [
        ("aws_endpoint", h.moto.as_str()),
        ("aws_allow_http", "true"),
        ("aws_region", REGION),
        ("aws_access_key_id", "testing"),
        ("aws_secret_access_key", "testing"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ork_api::payload_store::open(&format!("s3://{bucket}/ork/"), &options).expect("the S3 store")
}
