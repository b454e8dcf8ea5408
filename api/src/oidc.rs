//! Google-signed OIDC ID tokens, the credential Cloud Scheduler (and
//! Pub/Sub push, Cloud Tasks) puts in `Authorization: Bearer` when it calls
//! `/advance`. A token is accepted when Google's key signed it (RS256, key
//! by `kid` from the JWKS, cached), it has not expired, its issuer is
//! Google's, its audience is the configured one (the service URL) and its
//! `email` is the configured service account, verified.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Google's public keys for its ID tokens.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
const ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// How long fetched keys are used before they are fetched again.
const KEYS_TTL: Duration = Duration::from_secs(3600);
/// Fewest seconds between fetches prompted by an unknown `kid`, so that
/// forged tokens cannot make every request fetch the keys.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// Checks ID tokens for one audience and one service account.
pub struct OidcVerifier {
    audience: String,
    service_account: String,
    jwks_url: String,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<Option<(JwkSet, Instant)>>,
    last_fetch: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Claims {
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
}

impl OidcVerifier {
    pub fn new(audience: String, service_account: String, jwks_url: String) -> Self {
        OidcVerifier {
            audience,
            service_account,
            jwks_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client with default TLS"),
            keys: tokio::sync::Mutex::new(None),
            last_fetch: Mutex::new(None),
        }
    }

    /// `Ok` when `token` is a valid ID token of the configured service
    /// account for the configured audience; else why not.
    pub async fn verify(&self, token: &str) -> Result<(), String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if header.alg != Algorithm::RS256 {
            return Err(format!("unexpected algorithm {:?}", header.alg));
        }
        let kid = header.kid.ok_or("the token names no key (kid)")?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&ISSUERS);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| format!("invalid ID token: {e}"))?
            .claims;
        match claims.email {
            Some(email) if email == self.service_account && claims.email_verified => Ok(()),
            Some(email) => Err(format!(
                "ID token of {email}, not of {} (or its email is unverified)",
                self.service_account
            )),
            None => Err("the ID token carries no email".into()),
        }
    }

    /// The key `kid`, from the cache or freshly fetched.
    async fn key(&self, kid: &str) -> Result<DecodingKey, String> {
        let mut keys = self.keys.lock().await;
        let fresh = keys.as_ref().is_some_and(|(_, at)| at.elapsed() < KEYS_TTL);
        let known = keys.as_ref().and_then(|(set, _)| set.find(kid)).is_some();
        if !fresh || (!known && self.may_refetch()) {
            *keys = Some((self.fetch().await?, Instant::now()));
        }
        let jwk = keys
            .as_ref()
            .and_then(|(set, _)| set.find(kid))
            .ok_or_else(|| format!("no key {kid:?} at {}", self.jwks_url))?;
        DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key {kid:?}: {e}"))
    }

    fn may_refetch(&self) -> bool {
        let mut last = self.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if at.elapsed() < REFETCH_INTERVAL => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        *self.last_fetch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let response = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("cannot fetch {}: {e}", self.jwks_url))?;
        response
            .json()
            .await
            .map_err(|e| format!("unreadable keys at {}: {e}", self.jwks_url))
    }
}
