//! Callback tokens: what a worker presents when it reports an attempt's end.
//!
//! A token names one attempt and an expiry, signed with HMAC-SHA256 under
//! `ORK_SIGNING_KEY`: `base64url(claims JSON) "." base64url(mac)`. A worker
//! can report only the attempt it was given, and only until the token
//! expires; whether that attempt is still current is the engine's business.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::model::AttemptRef;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed callback token")]
    Malformed,
    #[error("callback token signature does not match")]
    BadSignature,
    #[error("callback token expired at {0}")]
    Expired(DateTime<Utc>),
}

#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(flatten)]
    attempt: AttemptRef,
    /// Expiry, Unix seconds.
    exp: i64,
}

/// Signs and checks callback tokens with one key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A key shorter than 32 bytes is refused: it would be guessable.
    pub fn new(key: impl Into<Vec<u8>>) -> Result<Signer, String> {
        let key = key.into();
        if key.len() < 32 {
            return Err(format!(
                "the signing key has {} bytes; at least 32 are needed",
                key.len()
            ));
        }
        Ok(Signer { key })
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    pub fn sign(&self, attempt: &AttemptRef, expires: DateTime<Utc>) -> String {
        let claims = Claims {
            attempt: attempt.clone(),
            exp: expires.timestamp(),
        };
        let payload = B64.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let sig = B64.encode(self.mac(payload.as_bytes()).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// The attempt a token names, if the signature holds and it has not expired.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AttemptRef, TokenError> {
        let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        // `verify_slice` compares in constant time.
        self.mac(payload.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = B64
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenError::Malformed)?;
        let expires = DateTime::from_timestamp(claims.exp, 0).ok_or(TokenError::Malformed)?;
        if expires <= now {
            return Err(TokenError::Expired(expires));
        }
        Ok(claims.attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn attempt() -> AttemptRef {
        AttemptRef {
            run_id: Uuid::now_v7(),
            workflow: "etl".into(),
            version: 2,
            task_id: Uuid::now_v7(),
            name: "load".into(),
            task_index: 0,
            attempt: 1,
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let signer = Signer::new([7u8; 32]).unwrap();
        let now = Utc::now();
        let token = signer.sign(&attempt(), now + chrono::Duration::minutes(5));
        let back = signer.verify(&token, now).unwrap();
        assert_eq!((back.name.as_str(), back.attempt), ("load", 1));
        let later = now + chrono::Duration::minutes(6);
        assert!(matches!(
            signer.verify(&token, later),
            Err(TokenError::Expired(_))
        ));
    }

    #[test]
    fn forged_tokens_are_refused() {
        let signer = Signer::new([7u8; 32]).unwrap();
        let other = Signer::new([8u8; 32]).unwrap();
        let now = Utc::now();
        let exp = now + chrono::Duration::minutes(5);
        // Signed with another key.
        assert_eq!(
            signer.verify(&other.sign(&attempt(), exp), now),
            Err(TokenError::BadSignature)
        );
        // Claims changed after signing (attempt 1 -> 2).
        let token = signer.sign(&attempt(), exp);
        let (payload, sig) = token.split_once('.').unwrap();
        let json = String::from_utf8(B64.decode(payload).unwrap())
            .unwrap()
            .replace("\"attempt\":1", "\"attempt\":2");
        let forged = format!("{}.{sig}", B64.encode(json));
        assert_eq!(signer.verify(&forged, now), Err(TokenError::BadSignature));
        assert_eq!(
            signer.verify("not-a-token", now),
            Err(TokenError::Malformed)
        );
        assert!(Signer::new(b"short".to_vec()).is_err());
    }
}
