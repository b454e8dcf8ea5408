//! [`TestApp`]: the handlers served over real HTTP on a random local port,
//! as `ork serve` serves them, with the engine and executors a test chooses.

use std::sync::Arc;
use std::time::Duration;

use ork_api::advancer::Advancer;
use ork_api::oidc::OidcVerifier;
use ork_api::waker::Waker;
use ork_api::Handlers;
use ork_core::engine::{CallbackConfig, Engine, EngineConfig};
use ork_core::executor::Executors;
use ork_core::store::Store;
use ork_core::token::Signer;

/// The signing key of every test app's callback tokens.
pub const SIGNING_KEY: &[u8; 32] = b"ork-test-signing-key-0123456789a";

/// A served app: its base URL, and the parts a test may reach into.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub url: String,
    pub engine: Arc<Engine>,
    pub handlers: Arc<Handlers>,
    pub signer: Signer,
    pub http: reqwest::Client,
    pub api_key: Option<String>,
}

/// How to build a [`TestApp`]; see [`TestApp::builder`].
pub struct TestAppBuilder {
    store: Store,
    executors: Executors,
    api_key: Option<String>,
    advancer: Advancer,
    grace: Duration,
    oidc: Option<Arc<OidcVerifier>>,
    waker: Waker,
    log_dir: Option<std::path::PathBuf>,
    payloads: Option<ork_core::payload::Payloads>,
}

impl TestApp {
    /// An app over `store` with no executors, no API key, advancing inline.
    pub fn builder(store: Store) -> TestAppBuilder {
        TestAppBuilder {
            store,
            executors: Executors::new(),
            api_key: None,
            advancer: Advancer::Inline,
            grace: Duration::from_secs(600),
            oidc: None,
            waker: Waker::None,
            log_dir: None,
            payloads: None,
        }
    }

    /// `POST {url}{path}` with `body` as JSON (and the API key, if any):
    /// the status and the JSON answer (`null` when it is not JSON).
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let mut request = self.http.post(format!("{}{path}", self.url)).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let r = request.send().await.expect("request to the test app");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

impl TestAppBuilder {
    pub fn executors(mut self, executors: Executors) -> Self {
        self.executors = executors;
        self
    }

    /// Require `Authorization: Bearer <key>` as `ORK_API_KEY` does.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    pub fn advancer(mut self, advancer: Advancer) -> Self {
        self.advancer = advancer;
        self
    }

    /// How long callback tokens stay valid beyond a task's timeout.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Accept Google-signed ID tokens on `advance`, as `ORK_OIDC_*` configure.
    pub fn oidc(mut self, verifier: OidcVerifier) -> Self {
        self.oidc = Some(Arc::new(verifier));
        self
    }

    /// Wake-ups before the next scheduled sweep, as `ORK_WAKE_*` configure.
    pub fn waker(mut self, waker: Waker) -> Self {
        self.waker = waker;
        self
    }

    /// Where the UI's log route reads local attempts' logs.
    pub fn log_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// Binds a random port, points the callback URL at it, and serves.
    /// The engine's payload store (default: a directory of the process's).
    pub fn payloads(mut self, payloads: ork_core::payload::Payloads) -> Self {
        self.payloads = Some(payloads);
        self
    }

    pub async fn spawn(self) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let signer = Signer::new(*SIGNING_KEY).expect("a 32-byte key");
        let config = EngineConfig {
            callback: Some(CallbackConfig {
                url: format!("{url}/complete"),
                signer: signer.clone(),
                grace: self.grace,
            }),
            ..EngineConfig::default()
        };
        let config = match self.payloads {
            Some(payloads) => EngineConfig { payloads, ..config },
            None => config,
        };
        let engine = Arc::new(Engine::new(self.store, self.executors, config));
        let handlers = Arc::new(Handlers {
            engine: engine.clone(),
            api_key: self.api_key.clone(),
            signer: signer.clone(),
            advancer: self.advancer,
            oidc: self.oidc,
            waker: self.waker,
            log_dir: self.log_dir,
            reports: Default::default(),
        });
        let app = ork_api::http::router(handlers.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestApp {
            url,
            engine,
            handlers,
            signer,
            http: reqwest::Client::new(),
            api_key: self.api_key,
        }
    }
}
