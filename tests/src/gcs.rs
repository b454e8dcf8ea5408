//! `gcp-storage-emulator` (PyPI), a GCS server in a process, for the GCS
//! payload store: started on a free port on first use, in memory, stopped
//! with the test binary (a watchdog in the launching shell kills it when
//! this process's pipe closes, as for moto). Reached through a small shim
//! that fixes one gap of its XML API: it sends no `ETag` (nor
//! `Last-Modified`) for objects, which GCS always does and `object_store`
//! requires.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Emulator {
    url: String,
    _shell: Child,
    _stdin: ChildStdin,
}

/// The URL of the emulator's shim (`http://127.0.0.1:PORT`), started once
/// per test binary.
pub fn emulator() -> &'static str {
    static EMULATOR: OnceLock<(Emulator, String)> = OnceLock::new();
    &EMULATOR
        .get_or_init(|| {
            let e = start();
            let shim = start_shim(e.url.clone());
            (e, shim)
        })
        .1
}

/// A pass-through proxy that adds `ETag` (the MD5 of `X-Goog-Hash`, as
/// GCS's own) and `Last-Modified` to answers without them. On its own
/// thread and runtime, so it outlives each test's runtime.
fn start_shim(emulator: String) -> String {
    use axum::body::Bytes;
    use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};

    async fn forward(
        emulator: String,
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
            .request(method, format!("{emulator}{path}"))
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
        if !headers.contains_key(header::ETAG) {
            let md5 = headers
                .get("x-goog-hash")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.split(',').find_map(|p| p.trim().strip_prefix("md5=")))
                .unwrap_or("none")
                .to_owned();
            headers.insert(
                header::ETAG,
                HeaderValue::from_str(&format!("\"{md5}\"")).unwrap(),
            );
        }
        headers
            .entry(header::LAST_MODIFIED)
            .or_insert(HeaderValue::from_static("Fri, 04 Dec 2026 00:00:00 GMT"));
        let body = resp.bytes().await.unwrap_or_default();
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
            let client = crate::moto::local_http();
            let app = axum::Router::new()
                .fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        forward(emulator.clone(), client.clone(), method, uri, headers, body)
                    },
                )
                .layer(axum::extract::DefaultBodyLimit::disable());
            axum::serve(listener, app).await.expect("shim");
        });
    });
    url
}

fn start() -> Emulator {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let script = format!(
        "exec 3<&0\n\
         gcp-storage-emulator start -H 127.0.0.1 --port {port} --in-memory -q >/dev/null 2>&1 & pid=$!\n\
         (read _ignored <&3; kill $pid 2>/dev/null) &\n\
         wait $pid"
    );
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot run sh to start gcp-storage-emulator");
    let stdin = shell.stdin.take().expect("stdin");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if shell.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
            panic!("gcp-storage-emulator did not start on port {port}: is `pip install gcp-storage-emulator` done?");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator {
        url: format!("http://127.0.0.1:{port}"),
        _shell: shell,
        _stdin: stdin,
    }
}

/// A payload store (`ORK_PAYLOAD_URL`) in a new bucket of the emulator,
/// with a service-account key (a real RSA key: presigned URLs are signed
/// with it).
pub async fn store() -> ork_core::payload::Remote {
    let url = emulator();
    // No '-': `object_store` sends it percent-encoded, which the emulator
    // does not decode in a bucket name.
    let bucket = format!("ork{}", uuid::Uuid::now_v7().simple());
    let resp = crate::moto::local_http()
        .post(format!("{url}/storage/v1/b?project=test"))
        .json(&serde_json::json!({"name": bucket}))
        .send()
        .await
        .expect("create bucket");
    assert!(
        resp.status().is_success(),
        "create bucket: {}",
        resp.status()
    );
    let key = serde_json::json!({
        "private_key": crate::fake_cloudrun::test_rsa_key_pem(),
        "private_key_id": "0123456789abcdef",
        "client_email": "ork@test.iam.gserviceaccount.com",
    });
    let options = vec![
        ("google_service_account_key".to_owned(), key.to_string()),
        ("google_base_url".to_owned(), url.to_owned()),
        ("allow_http".to_owned(), "true".to_owned()),
    ];
    ork_api::payload_store::open(&format!("gs://{bucket}/ork"), &options).expect("the GCS store")
}
