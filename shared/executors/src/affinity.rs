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
//!
//! On that one CPU, the pinned threads also run under `SCHED_BATCH`: a
//! thread woken by a hand-off does not preempt the one that woke it, so
//! SQLite's thread sends its whole answer (rows, then the statement's
//! end) before the runtime's thread reads it, one exchange per statement
//! instead of two or three. A chain of 40 `sh`: about 2,450 → 1,550
//! context switches, a tenth less CPU time, 1.3 ms less wall time (paired
//! median of 31 turns: 50.3 → 48.2 ms); 40 noop tasks 18.2 → 17.2 ms.
//! The tasks get the policy this process had back, with its CPUs.

use std::sync::OnceLock;

use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs this process could use before [`pin_to_current_cpu`], and
/// whether it then moved from `SCHED_OTHER` to `SCHED_BATCH`.
static ORIGINAL: OnceLock<(CpuSet, bool)> = OnceLock::new();

/// Pins the calling thread, and so every thread it starts afterwards, to
/// the CPU it runs on: call it first in `main`, before any runtime starts.
/// It also moves the calling thread, and so every thread it starts
/// afterwards, to `SCHED_BATCH` (see the module doc).
/// `ORK_PIN_CPU=false` turns both off. Failures (no such syscall, a mask of
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
    // A policy someone chose (`chrt`) is left as it is.
    // SAFETY: reads the calling thread's own policy.
    let batched = unsafe { libc::sched_getscheduler(0) } == libc::SCHED_OTHER
        && set_policy(libc::SCHED_BATCH);
    let _ = ORIGINAL.set((original, batched));
}

/// Runs `spawn` with the calling thread's pin and policy lifted, so the
/// process it starts inherits the CPUs and the scheduling policy this
/// process had before [`pin_to_current_cpu`] (and the kernel places it on
/// the idlest of its CPUs when it execs); the thread gets its pin and its
/// policy back afterwards. Without a pin, just `spawn()`.
pub fn unpinned<T>(spawn: impl FnOnce() -> T) -> T {
    let Some((original, batched)) = ORIGINAL.get() else {
        return spawn();
    };
    let me = Pid::from_raw(0);
    let pinned = sched_getaffinity(me);
    let _ = sched_setaffinity(me, original);
    if *batched {
        set_policy(libc::SCHED_OTHER);
    }
    let spawned = spawn();
    if *batched {
        set_policy(libc::SCHED_BATCH);
    }
    if let Ok(pinned) = pinned {
        let _ = sched_setaffinity(me, &pinned);
    }
    spawned
}

/// Sets the calling thread's scheduling policy (one without priorities:
/// `SCHED_OTHER`, `SCHED_BATCH`); a failure leaves it as it was.
fn set_policy(policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sets the calling thread's own policy from a valid parameter.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}
