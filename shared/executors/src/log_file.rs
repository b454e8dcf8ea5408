//! The attempts' log files, made before the spawn that needs one.
//!
//! Creating a file is the slowest step between one task's exit and the
//! next one's start in a chain of processes: the inode (~140 µs traced on
//! this project's bench machine, whose ext4 has no journal and scans past
//! every inode deleted in the last minute). So the executor keeps one spare
//! file, made while the previous task runs: an unnamed file (`O_TMPFILE`)
//! in the run's log directory, handed to the child as its stdout and
//! stderr, and linked under its name once the child has started. An
//! unnamed file that is never used vanishes when it is closed (or when
//! `ork` exits): nothing is left behind. Where the filesystem has no
//! unnamed files, the log is created by name, as before.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{AtFlags, OFlag, AT_FDCWD};
use nix::unistd::linkat;

/// An attempt's log: its name, and whether it still has to be given it.
pub(crate) struct LogFile {
    pub(crate) file: File,
    path: PathBuf,
    unnamed: bool,
}

impl LogFile {
    /// Gives an unnamed log its name (replacing a file left there by an
    /// earlier process). Call once the child holds the file.
    pub(crate) fn name(self) -> io::Result<()> {
        if !self.unnamed {
            return Ok(());
        }
        // Without CAP_DAC_READ_SEARCH, an unnamed file is linked through
        // its `/proc` path.
        let proc = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        let link = || {
            linkat(
                AT_FDCWD,
                &proc,
                AT_FDCWD,
                &self.path,
                AtFlags::AT_SYMLINK_FOLLOW,
            )
        };
        match link() {
            Err(nix::errno::Errno::EEXIST) => {
                std::fs::remove_file(&self.path)?;
                link().map_err(io::Error::from)
            }
            other => other.map_err(io::Error::from),
        }
    }
}

/// One spare unnamed file, and the directory it was made in.
#[derive(Default)]
pub(crate) struct SpareLogs {
    spare: Mutex<Option<(PathBuf, File)>>,
}

impl SpareLogs {
    /// A log file for `path`: the spare when it was made in `path`'s
    /// directory, else a new unnamed file there, else a file created by
    /// name.
    pub(crate) fn take(&self, path: &Path) -> io::Result<LogFile> {
        let dir = path.parent().expect("a log path has a parent");
        let spare = self.spare.lock().expect("poisoned").take();
        let unnamed = match spare {
            Some((made_in, file)) if made_in == dir => Some(file),
            _ => unnamed_in(dir).ok(),
        };
        Ok(match unnamed {
            Some(file) => LogFile {
                file,
                path: path.to_path_buf(),
                unnamed: true,
            },
            None => LogFile {
                file: File::create(path)?,
                path: path.to_path_buf(),
                unnamed: false,
            },
        })
    }

    /// Makes the spare for the next log in `dir`, if there is none.
    pub(crate) fn refill(&self, dir: &Path) {
        let mut spare = self.spare.lock().expect("poisoned");
        if spare.as_ref().is_some_and(|(made_in, _)| made_in == dir) {
            return;
        }
        *spare = unnamed_in(dir).ok().map(|file| (dir.to_path_buf(), file));
    }
}

/// An unnamed file in `dir` (`O_TMPFILE`), readable by others like a
/// created one.
fn unnamed_in(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(OFlag::O_TMPFILE.bits())
        .mode(0o644)
        .open(dir)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_log_is_named_once_written_and_a_spare_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spares = SpareLogs::default();
        let path = dir.path().join("a.0.1.log");
        let mut log = spares.take(&path).expect("log");
        log.file.write_all(b"hi\n").expect("write");
        // This filesystem (ext4 or tmpfs) has unnamed files: nothing has a
        // name until the child has started.
        assert!(names(dir.path()).is_empty());
        log.name().expect("named");
        spares.refill(dir.path());
        let next = dir.path().join("b.0.1.log");
        let mut log = spares.take(&next).expect("the spare");
        log.file.write_all(b"ho\n").expect("write");
        log.name().expect("named");
        spares.refill(dir.path());
        drop(spares);
        assert_eq!(names(dir.path()), ["a.0.1.log", "b.0.1.log"]);
        assert_eq!(std::fs::read_to_string(&path).expect("a"), "hi\n");
        assert_eq!(std::fs::read_to_string(&next).expect("b"), "ho\n");
    }

    #[test]
    fn a_stale_log_is_replaced_and_a_spare_stays_in_its_directory() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let spares = SpareLogs::default();
        spares.refill(one.path());
        let path = two.path().join("a.0.1.log");
        std::fs::write(&path, "left by a killed run\n").expect("stale");
        let mut log = spares.take(&path).expect("log");
        log.file.write_all(b"new\n").expect("write");
        log.name().expect("named over the stale file");
        assert_eq!(std::fs::read_to_string(&path).expect("log"), "new\n");
        assert!(names(one.path()).is_empty());
        assert_eq!(names(two.path()), ["a.0.1.log"]);
    }
}
