//! The linker's symbol order files (`cli/symbol-order.txt`,
//! `functions/symbol-order.txt`, see `cli/build.rs`) were written from the
//! sources as they are.
//!
//! They list functions by their mangled names, and any change to the code
//! the binaries are built from may rename some (a generic instance's hash,
//! LLVM's `.llvm.N` suffixes, a closure's number). The linker skips names
//! it does not find, so a stale file builds fine and only costs memory: one
//! left stale by two small commits had a 40-task `ork run` at 12.5 MiB of
//! RSS instead of 9.8, over the 12 MB that issue 15 sets. `just
//! symbol-order` writes the files with a fingerprint of the sources in
//! their first line; this test computes it again, as
//! `scripts/symbol_order.py` does.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where the binaries' sources are, as `SOURCE_DIRS` and `SOURCE_FILES` in
/// `scripts/symbol_order.py`.
const SOURCE_DIRS: [&str; 4] = ["shared", "api", "cli", "functions"];
const SOURCE_FILES: [&str; 2] = ["Cargo.toml", "Cargo.lock"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Every `*.rs` and `Cargo.toml` under `dir` (relative to `root`), outside
/// `target` directories.
fn sources(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(root.join(dir)).expect("read a source directory") {
        let entry = entry.expect("a directory entry");
        let rel = dir.join(entry.file_name());
        let kind = entry.file_type().expect("a file type");
        if kind.is_dir() && entry.file_name() != "target" {
            sources(root, &rel, out);
        } else if kind.is_file()
            && (rel.extension().is_some_and(|e| e == "rs") || entry.file_name() == "Cargo.toml")
        {
            out.push(rel.to_str().expect("a UTF-8 path").replace('\\', "/"));
        }
    }
}

/// SHA-256 over each source's path and bytes, sorted by path.
fn fingerprint(root: &Path) -> String {
    let mut paths: Vec<String> = SOURCE_FILES.iter().map(|f| f.to_string()).collect();
    for dir in SOURCE_DIRS {
        sources(root, Path::new(dir), &mut paths);
    }
    paths.sort();
    let mut digest = Sha256::new();
    for path in &paths {
        digest.update(path.as_bytes());
        digest.update([0]);
        digest.update(std::fs::read(root.join(path)).expect("read a source"));
        digest.update([0]);
    }
    hex::encode(digest.finalize())
}

#[test]
fn symbol_order_files_match_the_sources() {
    let root = root();
    let now = fingerprint(&root);
    for file in ["cli/symbol-order.txt", "functions/symbol-order.txt"] {
        let text = std::fs::read_to_string(root.join(file)).expect("read the order file");
        let recorded = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# sources "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("(none)");
        assert_eq!(
            recorded, now,
            "{file} was written from other sources than these: run `just symbol-order` \
             (needs valgrind and PostgreSQL) and commit the files"
        );
        let names = text.lines().filter(|l| !l.starts_with('#')).count();
        assert!(names > 1000, "{file} lists only {names} functions");
    }
}
