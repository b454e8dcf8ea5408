//! `gcp-storage-emulator` (PyPI), a GCS server in a process, for the GCS
//! payload store: started on a free port on first use, in memory, stopped
//! with the test binary (a watchdog in the launching shell kills it when
//! this process's pipe closes, as for moto). Reached through a small shim
//! that fills two gaps of its XML API: it sends no `ETag` (nor
//! `Last-Modified`) for objects, which GCS always does and `object_store`
//! requires; and it has no XML multipart uploads (`POST ?uploads`, `PUT
//! ?partNumber&uploadId`, `POST ?uploadId`, `DELETE ?uploadId`: its XML
//! routes answer only GET and PUT, and a part's PUT would overwrite the
//! object), which `object_store` uses for every object over one part. The
//! shim keeps the parts of an upload and, at its completion, checks the
//! listed parts' ETags and PUTs their concatenation to the emulator, as GCS
//! assembles an object (see [`Multipart`]).

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
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
        uploads: Arc<Multipart>,
        method: Method,
        uri: Uri,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let body = match uploads.handle(&method, &uri, body) {
            Step::Answer(status, headers, body) => return (status, headers, body).into_response(),
            Step::Forward(body) => body,
        };
        // A completed upload: its whole object is PUT, the answer is XML.
        let completing =
            method == Method::POST && uri.query().is_some_and(|q| q.contains("uploadId="));
        let method = if completing { Method::PUT } else { method };
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        let path = match uri.query() {
            Some(q) if q.contains("uploadId=") => uri.path(),
            _ => uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        };
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
        let mut body = resp.bytes().await.unwrap_or_default();
        if completing && status.is_success() {
            let etag = headers[header::ETAG].to_str().unwrap_or_default();
            body = format!("<CompleteMultipartUploadResult><ETag>{etag}</ETag></CompleteMultipartUploadResult>").into();
        }
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
            let uploads = Arc::new(Multipart::default());
            let app = axum::Router::new()
                .fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let (e, c, u) = (emulator.clone(), client.clone(), uploads.clone());
                        forward(e, c, u, method, uri, headers, body)
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

/// How many parts the shim's completed multipart uploads had, in all (a
/// test's proof that an upload went in parts).
pub static PARTS_ASSEMBLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What the shim does with a request: answer it itself, or forward it to
/// the emulator with this body.
enum Step {
    Answer(
        axum::http::StatusCode,
        axum::http::HeaderMap,
        axum::body::Bytes,
    ),
    Forward(axum::body::Bytes),
}

/// GCS's XML multipart uploads, which the emulator lacks: uploads in
/// progress by id, each its parts by number with their ETags.
#[derive(Default)]
struct Multipart {
    uploads: Mutex<HashMap<String, Parts>>,
}

/// An upload's parts by number: each its ETag and bytes.
type Parts = BTreeMap<u32, (String, axum::body::Bytes)>;

impl Multipart {
    fn handle(
        &self,
        method: &axum::http::Method,
        uri: &axum::http::Uri,
        body: axum::body::Bytes,
    ) -> Step {
        use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
        let query: HashMap<&str, &str> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        let xml = |status, text: String| {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
            Step::Answer(status, h, text.into())
        };
        let mut uploads = self.uploads.lock().unwrap();
        match (method, query.get("uploads"), query.get("uploadId")) {
            (&Method::POST, Some(_), None) => {
                let id = uuid::Uuid::now_v7().simple().to_string();
                uploads.insert(id.clone(), BTreeMap::new());
                xml(
                    StatusCode::OK,
                    format!("<InitiateMultipartUploadResult><UploadId>{id}</UploadId></InitiateMultipartUploadResult>"),
                )
            }
            (&Method::PUT, None, Some(id)) => {
                let Some(parts) = uploads.get_mut(*id) else {
                    return xml(
                        StatusCode::NOT_FOUND,
                        "<Error><Code>NoSuchUpload</Code></Error>".into(),
                    );
                };
                let Some(n) = query.get("partNumber").and_then(|n| n.parse().ok()) else {
                    return xml(
                        StatusCode::BAD_REQUEST,
                        "<Error><Code>InvalidArgument</Code></Error>".into(),
                    );
                };
                use sha2::Digest;
                let etag = format!("\"{}\"", hex::encode(&sha2::Sha256::digest(&body)[..16]));
                parts.insert(n, (etag.clone(), body));
                let mut h = HeaderMap::new();
                h.insert(header::ETAG, HeaderValue::from_str(&etag).unwrap());
                Step::Answer(StatusCode::OK, h, Default::default())
            }
            (&Method::DELETE, None, Some(id)) => {
                uploads.remove(*id);
                Step::Answer(StatusCode::NO_CONTENT, HeaderMap::new(), Default::default())
            }
            (&Method::POST, None, Some(id)) => {
                let Some(parts) = uploads.remove(*id) else {
                    return xml(
                        StatusCode::NOT_FOUND,
                        "<Error><Code>NoSuchUpload</Code></Error>".into(),
                    );
                };
                // The parts listed, in order, each with the ETag its PUT got.
                let text = String::from_utf8_lossy(&body);
                let mut whole = Vec::new();
                for part in text.split("<Part>").skip(1) {
                    let field = |name: &str| {
                        let start = part.find(&format!("<{name}>"))? + name.len() + 2;
                        let end = part.find(&format!("</{name}>"))?;
                        Some(part[start..end].trim().to_owned())
                    };
                    let n: Option<u32> = field("PartNumber").and_then(|n| n.parse().ok());
                    match n.and_then(|n| parts.get(&n)) {
                        Some((etag, bytes)) if Some(etag.as_str()) == field("ETag").as_deref() => {
                            whole.extend_from_slice(bytes)
                        }
                        _ => {
                            return xml(
                                StatusCode::BAD_REQUEST,
                                "<Error><Code>InvalidPart</Code></Error>".into(),
                            )
                        }
                    }
                }
                PARTS_ASSEMBLED.fetch_add(parts.len(), std::sync::atomic::Ordering::SeqCst);
                Step::Forward(whole.into())
            }
            _ => Step::Forward(body),
        }
    }
}
