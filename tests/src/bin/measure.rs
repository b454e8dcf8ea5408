//! `measure REPORT PROGRAM [ARGS…]`: runs PROGRAM (stdin, stdout, stderr,
//! environment and directory inherited) to its end, then writes
//! `WALL_NS PEAK_RSS_KIB WAIT_STATUS` to the file REPORT. The benches
//! measure processes through it.
//!
//! Why a process of its own: at `exec`, Linux folds the peak resident set
//! of the address space being replaced into the process's `ru_maxrss`
//! (`exec_mmap` → `setmax_mm_hiwater_rss`). A child spawned by a large
//! process (`posix_spawn` runs the child in its parent's address space
//! until the `exec`) reports the parent's peak whenever it is the larger:
//! `/bin/true` spawned by a bench that had reached 13 MiB "peaked" at
//! 13 MiB. Spawned from here, the address space replaced is this small
//! process's, about 1 MiB.

use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(report), Some(program)) = (args.next(), args.next()) else {
        eprintln!("usage: measure REPORT PROGRAM [ARGS…]");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    // Reaped below by wait4, which also gives its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = match Command::new(&program).args(args).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("measure: cannot run {program:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain old data, filled in by wait4 for our own
    // child, which `Child` never waits for (it is dropped unwaited).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if waited != pid {
        eprintln!("measure: wait4: {}", std::io::Error::last_os_error());
        return ExitCode::from(2);
    }
    let line = format!("{} {} {status}\n", wall.as_nanos(), usage.ru_maxrss);
    match std::fs::write(&report, line) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("measure: cannot write {report:?}: {e}");
            ExitCode::from(2)
        }
    }
}
