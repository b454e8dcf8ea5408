//! Link settings of the binaries (`ork`, and the Lambda functions, whose
//! `functions/Cargo.toml` names this file).
//!
//! - `-no-pie`: a PIE of this size (the AWS, Kubernetes and Azure clients)
//!   has 2.3 MB of pointers in `.data.rel.ro` that the loader relocates at
//!   every start, which dirties those pages for every process, whether it
//!   reads them or not. Without PIE the linker resolves them, and they are
//!   read from the file only as they are used: `ork --version` went from
//!   9.2 to 7.8 MiB of RSS, and an exec is ~1 ms shorter. (The last of
//!   `-pie`/`-no-pie` wins, with gcc and with cargo-lambda's `zig cc`.)
//! - `--symbol-ordering-file=symbol-order.txt` (the package's), in release
//!   builds for x86_64 Linux with Rust's own linker, LLD (not with a
//!   configured one, such as cargo-lambda's `zig cc`): the functions a run
//!   and a Lambda handler execute, placed together at the start of `.text`. A
//!   40-task `ork run` touched 11 MB of the 34 MB `.text` with the code in
//!   crate order, 3.9 MB with it ordered. `scripts/symbol_order.py` writes
//!   the files, from each package built on its own (`-p ork-cli`, as the
//!   Dockerfile builds it; built together with `-p ork-functions`, shared
//!   crates unify other features, and their symbols get other names).
//!   Names they list that no longer exist are skipped; the files record a
//!   fingerprint of the sources, which `tests/tests/symbol_order.rs` checks.
use std::path::Path;

fn main() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-changed=../cli/build.rs");
    let default_linker = std::env::var_os("RUSTC_LINKER").is_none();
    if var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("PROFILE") == "release"
        && default_linker
        && order.exists()
    {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
