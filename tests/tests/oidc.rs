//! The GCP sweeper as infra/gcp/README.md sets it up: Cloud Scheduler POSTs
//! `/advance` with an OIDC ID token (audience: the service URL, email: the
//! `ork-scheduler` service account), and the service, configured with
//! `ORK_OIDC_AUDIENCE` and `ORK_OIDC_SERVICE_ACCOUNT`, accepts it in place
//! of the API key. Google's signing keys are served by a local JWKS server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ork_api::oidc::OidcVerifier;
use ork_tests::app::TestApp;
use ork_tests::db;
use ork_tests::fake_cloudrun::test_rsa_key_pem;
use serde_json::{json, Value};

const AUDIENCE: &str = "https://ork-123456789.europe-west1.run.app";
const SCHEDULER: &str = "ork-scheduler@my-project.iam.gserviceaccount.com";
const API_KEY: &str = "the-api-key";
const KID: &str = "test-key-1";

/// Serves the public half of the test key as Google's JWKS endpoint does,
/// counting the fetches.
async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let key = EncodingKey::from_rsa_pem(test_rsa_key_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(KID.into());
    let set = JwkSet { keys: vec![jwk] };
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let app = Router::new().route(
        "/oauth2/v3/certs",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let set = set.clone();
            async move { Json(set) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/oauth2/v3/certs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, fetches)
}

/// An ID token as Google mints it for Cloud Scheduler.
fn id_token(claims: Value, pem: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn scheduler_claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "112233445566778899",
        "sub": "112233445566778899",
        "email": SCHEDULER,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    })
}

async fn advance(app: &TestApp, bearer: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/advance", app.url))
        .bearer_auth(bearer)
        .body("")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn cloud_scheduler_id_tokens_sweep_and_nothing_else_does() {
    let db = db::sqlite().await;
    let (jwks_url, fetches) = jwks_server().await;
    let app = TestApp::builder(db.store.clone())
        .api_key(API_KEY)
        .oidc(OidcVerifier::new(
            AUDIENCE.into(),
            SCHEDULER.into(),
            jwks_url,
        ))
        .spawn()
        .await;
    let pem = test_rsa_key_pem();

    // The scheduler's token sweeps, again and again, on keys fetched once.
    for _ in 0..3 {
        let (status, body) = advance(&app, &id_token(scheduler_claims(), pem)).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.get("fired").is_some(),
            "a sweep answers its counts: {body}"
        );
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "the JWKS is cached");

    // The API key still works.
    assert_eq!(advance(&app, API_KEY).await.0, 200);

    // Every way a token can be wrong is 401.
    let mut wrong_audience = scheduler_claims();
    wrong_audience["aud"] = json!("https://elsewhere.run.app");
    let mut other_account = scheduler_claims();
    other_account["email"] = json!("intruder@my-project.iam.gserviceaccount.com");
    let mut unverified = scheduler_claims();
    unverified["email_verified"] = json!(false);
    let mut expired = scheduler_claims();
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    let mut other_issuer = scheduler_claims();
    other_issuer["iss"] = json!("https://example.com");
    for (what, claims) in [
        ("wrong audience", wrong_audience),
        ("another service account", other_account),
        ("an unverified email", unverified),
        ("expired", expired),
        ("another issuer", other_issuer),
    ] {
        let (status, body) = advance(&app, &id_token(claims, pem)).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body["error"].is_string(), "{what}: JSON error {body}");
    }
    // Signed by a key that is not Google's (same kid, other key).
    let forged = id_token(scheduler_claims(), &other_rsa_key_pem());
    assert_eq!(advance(&app, &forged).await.0, 401, "forged signature");
    assert_eq!(advance(&app, "not-a-jwt").await.0, 401);

    // The ID token is for `advance` only: it does not trigger runs.
    let (status, _) = {
        let r = app
            .http
            .post(format!("{}/trigger", app.url))
            .bearer_auth(id_token(scheduler_claims(), pem))
            .json(&json!({"workflow": "any"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 401);
}

fn other_rsa_key_pem() -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl");
    String::from_utf8(out.stdout).unwrap()
}
