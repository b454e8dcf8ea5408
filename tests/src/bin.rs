//! The workspace's binaries (`ork`, the Lambda functions), for the tests
//! that run them as real processes. `cargo test --workspace` builds them;
//! a test run of this crate alone builds them on first use.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The path of binary `name` of package `package`, built if missing.
pub fn path(package: &str, name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable in target/<profile>/deps");
    let bin = dir.join(name);
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() {
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build.args(["build", "-p", package, "--bin", name]);
        if dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo build");
        assert!(
            status.success(),
            "cargo build -p {package} --bin {name} failed"
        );
    }
    bin
}

/// The `ork` command line.
pub fn ork() -> PathBuf {
    path("ork-cli", "ork")
}

/// The checkout's root (where `workflows/` is).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the checkout")
        .to_path_buf()
}

/// `ork` on the SQLite file `ork.db` in `dir`, without the tests'
/// `DATABASE_URL`, as on a user's machine; callers choose the working
/// directory and the log directory.
pub fn ork_on(dir: &Path) -> Command {
    let mut command = Command::new(ork());
    command
        .env(
            "ORK_DATABASE_URL",
            format!("sqlite:{}", dir.join("ork.db").display()),
        )
        .env_remove("DATABASE_URL");
    command
}

/// A finished command's stdout, then its stderr, as one text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
