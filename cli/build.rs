//! Links the binaries as position-dependent executables (`-no-pie`), also
//! for the Lambda functions (`functions/Cargo.toml` names this file).
//!
//! A PIE of this size (the AWS, Kubernetes and Azure clients) has 2.3 MB of
//! pointers in `.data.rel.ro` that the loader relocates at every start,
//! which dirties those pages for every process, whether it reads them or
//! not. Without PIE the linker resolves them, and they are read from the
//! file only as they are used: `ork --version` went from 9.2 to 7.8 MiB of
//! RSS, and an exec is ~1 ms shorter. (The last of `-pie`/`-no-pie` wins,
//! with gcc and with cargo-lambda's `zig cc` alike.)
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
