//! What every Ork integration test stands on: a fresh database per test on
//! each backend ([`db`], [`on_both_backends!`]), the handlers served on a
//! random port ([`app::TestApp`]), a Lambda Runtime API for one event
//! ([`lambda_runtime`]), the paths of the workspace's binaries
//! ([`bin`]), and local stand-ins that speak real APIs: moto for AWS
//! ([`moto`]) and a Cloud Run Admin API v2 with its OAuth token endpoint
//! ([`fake_cloudrun`]), a Kubernetes API server ([`fake_kube`]), Azure
//! Resource Manager for Container Apps Jobs with its token endpoints
//! ([`fake_azure`]), a Lambda `Invoke` endpoint that runs Ork's worker
//! function through the Lambda Runtime API ([`fake_lambda`]), and
//! `gcp-storage-emulator` for GCS ([`gcs`]).

pub mod app;
pub mod bin;
pub mod db;
pub mod fake_azure;
pub mod fake_cloudrun;
pub mod fake_kube;
pub mod fake_lambda;
pub mod gcs;
pub mod lambda_runtime;
pub mod moto;

/// Runs each named test body (an `async fn(TestDb)`) on both backends.
pub use ork_core::on_both_backends;

/// A workflow `name` of `pairs` parent → child pairs of noop tasks
/// (`p{i}` → `c{i}`): each parent's completion releases its own child.
pub fn pairs_yaml(name: &str, pairs: usize) -> String {
    let mut yaml = format!("name: {name}\ntasks:\n");
    for i in 0..pairs {
        yaml.push_str(&format!(
            "  p{i}: {{executor: noop}}\n  c{i}: {{executor: noop, depends_on: [p{i}]}}\n"
        ));
    }
    yaml
}
