//! The remote payload store named by `ORK_PAYLOAD_URL`: S3
//! (`s3://bucket/prefix`) or GCS (`gs://bucket/prefix`) through the
//! `object_store` crate. Credentials and endpoints come from the
//! environment the way each cloud's tools read them (`AWS_*`: keys, region,
//! `AWS_ENDPOINT_URL`, the Lambda/ECS role; `GOOGLE_*`: a service account,
//! else the metadata server), plus `options` (`object_store`'s config keys).
//! Presigned URLs are signed locally (S3 SigV4; GCS V4 with the service
//! account's key, or the IAM `signBlob` API for metadata-server identities).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use ork_core::payload::{Presign, Remote};

/// The store at `url`, with extra `object_store` options (`("aws_endpoint",
/// "http://…")`, …) on top of the environment's.
pub fn open(url: &str, options: &[(String, String)]) -> Result<Remote> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        anyhow!("ORK_PAYLOAD_URL {url:?} is not a URL (s3://bucket/prefix or gs://bucket/prefix)")
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("ORK_PAYLOAD_URL {url:?} names no bucket");
    }
    let prefix = Path::parse(prefix.trim_matches('/'))
        .with_context(|| format!("ORK_PAYLOAD_URL {url:?}: bad prefix"))?;
    let bucket_url = format!("{scheme}://{bucket}");
    let (store, presign): (Arc<dyn object_store::ObjectStore>, Arc<dyn Presign>) = match scheme {
        "s3" => {
            let mut b = AmazonS3Builder::from_env().with_url(&bucket_url);
            for (k, v) in options {
                b = b.with_config(k.parse().with_context(|| format!("S3 option {k:?}"))?, v);
            }
            let s3: Arc<AmazonS3> = Arc::new(b.build().context("the S3 payload store")?);
            (s3.clone(), Arc::new(Signed(s3)))
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(&bucket_url);
            for (k, v) in options {
                b = b.with_config(k.parse().with_context(|| format!("GCS option {k:?}"))?, v);
            }
            let gcs: Arc<GoogleCloudStorage> =
                Arc::new(b.build().context("the GCS payload store")?);
            (gcs.clone(), Arc::new(Signed(gcs)))
        }
        other => bail!("ORK_PAYLOAD_URL {url:?}: unknown scheme {other:?} (s3:// or gs://)"),
    };
    Ok(Remote {
        url: url.trim_end_matches('/').to_owned(),
        store,
        prefix,
        presign,
    })
}

/// A store that signs its own URLs.
struct Signed<S>(Arc<S>);

#[async_trait::async_trait]
impl<S: Signer> Presign for Signed<S> {
    async fn get_url(&self, path: &Path, ttl: Duration) -> Result<String, String> {
        self.0
            .signed_url(Method::GET, path, ttl)
            .await
            .map(|u| u.to_string())
            .map_err(|e| format!("cannot presign {path}: {e}"))
    }

    async fn put_url(&self, path: &Path, ttl: Duration) -> Result<String, String> {
        self.0
            .signed_url(Method::PUT, path, ttl)
            .await
            .map(|u| u.to_string())
            .map_err(|e| format!("cannot presign {path}: {e}"))
    }
}
