//! A new SQLite file starts as a copy of a template: the database the
//! migrations make, already in WAL mode, committed as
//! `migrations/sqlite-template.db` (PostgreSQL's `template1`, for the
//! embedded store).
//!
//! Why: making the schema through the migrations took 3–5 ms on the bench
//! machine, a third of a one-task `ork run` (the switch to WAL mode first
//! syncs a rollback journal four times, then five migrations run, each a
//! transaction). The copy takes one write and one fsync. A file this
//! process made from the template holds every migration, so they are not
//! run on it (their check alone is four statements); on any other file
//! they run, and apply what it lacks.
//!
//! `tests/tests/migrations.rs` checks that the template holds what the
//! migrations make, table by table and index by index, with the same
//! migrations recorded; `UPDATE_TEMPLATE=1` makes that test rewrite it.

use std::io::Write;
use std::path::Path;

/// The template's bytes.
static TEMPLATE: &[u8] = include_bytes!("../../../../migrations/sqlite-template.db");

/// Creates the database file at `path` from the template, unless a file is
/// there already (or `path` names no file: `:memory:`), and tells whether
/// this call linked it. Atomic: the bytes are written and synced beside it,
/// then linked into place, so another process opening the same new file
/// sees no file or the whole template.
pub(super) fn create(path: &Path) -> std::io::Result<bool> {
    if path.as_os_str() == ":memory:" || path.exists() {
        return Ok(false);
    }
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    // Unique to this call: openers in other threads write their own.
    let partial = path.with_file_name(format!(".{file_name}.{}", uuid::Uuid::new_v4()));
    let written = (|| {
        let mut f = std::fs::File::create(&partial)?;
        f.write_all(TEMPLATE)?;
        f.sync_all()?;
        match std::fs::hard_link(&partial, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&partial);
    written
}
