//! `ork run` keeps its own threads on one CPU; the tasks it starts get
//! every CPU back.
//!
//! A run driven in process is a relay between threads: the async workers
//! hand each statement to SQLite's connection thread and wait for its
//! answer, tens of times per task. When those threads sit on different idle
//! CPUs, every hand-off wakes a CPU from idle (an inter-processor interrupt,
//! and in a VM an exit to the hypervisor); on one CPU it is a plain context
//! switch. Measured on the 2-core bench machine: a 40-task chain of noop
//! tasks took 47 ms unpinned (22 ms when the scheduler happened to keep the
//! threads together) and 22 ms pinned; a 10,000-task fan-out 0.43 s and
//! 0.36 s. The tasks themselves must not inherit the pin, or a fan-out of
//! processes would share one CPU: [`unpinned`] starts each child with the
//! mask this process had.

use std::sync::OnceLock;

use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs this process could use before [`pin_to_current_cpu`].
static ORIGINAL: OnceLock<CpuSet> = OnceLock::new();

/// Pins the calling thread, and so every thread it starts afterwards, to
/// the CPU it runs on: call it first in `main`, before any runtime starts.
/// `ORK_PIN_CPU=false` turns it off. Failures (no such syscall, a mask of
/// one CPU already) leave things as they are.
pub fn pin_to_current_cpu() {
    if std::env::var("ORK_PIN_CPU").is_ok_and(|v| v == "false" || v == "0") {
        return;
    }
    let me = Pid::from_raw(0);
    let (Ok(original), Ok(cpu)) = (sched_getaffinity(me), sched_getcpu()) else {
        return;
    };
    let allowed = (0..CpuSet::count())
        .filter(|&c| original.is_set(c).unwrap_or(false))
        .count();
    let mut one = CpuSet::new();
    if allowed < 2 || one.set(cpu).is_err() || sched_setaffinity(me, &one).is_err() {
        return;
    }
    let _ = ORIGINAL.set(original);
}

/// Runs `spawn` with the calling thread's pin lifted, so the process it
/// starts inherits the CPUs this process had before [`pin_to_current_cpu`]
/// (and the kernel places it on the idlest of them when it execs); the
/// thread is pinned again afterwards. Without a pin, just `spawn()`.
pub fn unpinned<T>(spawn: impl FnOnce() -> T) -> T {
    let Some(original) = ORIGINAL.get() else {
        return spawn();
    };
    let me = Pid::from_raw(0);
    let pinned = sched_getaffinity(me);
    let _ = sched_setaffinity(me, original);
    let spawned = spawn();
    if let Ok(pinned) = pinned {
        let _ = sched_setaffinity(me, &pinned);
    }
    spawned
}
