//! Local attempts whose watcher died: the `ork` process that started a
//! child is the only one that can wait for it and report its end. When it
//! dies (kill -9, a crash), its attempts' leases would keep them in flight
//! until they run out (the heartbeat timeout, 5 min by default). An
//! execution id that names the child, its watcher and where pids mean
//! something lets a later `ork run --resume` on the same machine tell at
//! once that the watcher is gone, and whether the child still runs.
//!
//! `pid:4242;watcher=4100.8812345;space=<boot id>.<pid namespace>`: the
//! child's pid; the watcher's pid and start time (clock ticks since boot,
//! field 22 of `/proc/PID/stat`), so that a reused pid is not taken for it;
//! the kernel's boot id and the pid namespace's inode, since a pid means
//! nothing on another machine, in another container, or after a reboot.
//! Without procfs the id is `pid:4242` and nothing is judged.

use std::sync::OnceLock;

use ork_core::model::AttemptRef;

/// What became of an attempt's child, as seen from this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Nothing can be told from here: another machine or container, an id
    /// without a watcher (a detached `ork worker` reports for itself), or
    /// its watcher is alive and will report it.
    Unknown,
    /// The watcher is gone and so is the child: nobody will report it.
    Ended,
    /// The watcher is gone but the child (this pid) still runs, with
    /// nobody to wait for it or read its result.
    Orphaned(i32),
}

/// The execution id of a child this process watches.
pub(crate) fn execution_id(child: u32) -> String {
    match me() {
        Some((watcher, space)) => format!("pid:{child};watcher={watcher};space={space}"),
        None => format!("pid:{child}"),
    }
}

/// What became of the child of `execution_id`, which ran `attempt`.
pub(crate) fn fate(execution_id: &str, attempt: &AttemptRef) -> Fate {
    let Some((_, space)) = me() else {
        return Fate::Unknown;
    };
    let mut parts = execution_id.split(';');
    let child = parts.next().and_then(|p| p.strip_prefix("pid:"));
    let (mut watcher, mut its_space) = (None, None);
    for part in parts {
        match part.split_once('=') {
            Some(("watcher", w)) => watcher = w.split_once('.'),
            Some(("space", s)) => its_space = Some(s),
            _ => {}
        }
    }
    let (Some(child), Some((watcher, started)), Some(its_space)) = (child, watcher, its_space)
    else {
        return Fate::Unknown;
    };
    let (Ok(child), Ok(watcher), Ok(started)) = (
        child.parse::<i32>(),
        watcher.parse::<i32>(),
        started.parse::<u64>(),
    ) else {
        return Fate::Unknown;
    };
    if its_space != space || start_time(watcher) == Some(started) {
        return Fate::Unknown;
    }
    if runs_attempt(child, attempt) {
        Fate::Orphaned(child)
    } else {
        Fate::Ended
    }
}

/// This process as a watcher (`pid.start`) and its pid space, read once.
fn me() -> Option<&'static (String, String)> {
    static ME: OnceLock<Option<(String, String)>> = OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        let started = start_time(pid as i32)?;
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        // "pid:[4026531836]"
        let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let namespace: String = namespace
            .to_string_lossy()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        Some((
            format!("{pid}.{started}"),
            format!("{}.{namespace}", boot.trim()),
        ))
    })
    .as_ref()
}

/// When `pid` started (clock ticks since boot), if it runs (zombies do not).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid … starttime": comm may hold spaces and ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    // Field 22 of the line is the 20th after the comm.
    fields.get(19)?.parse().ok()
}

/// Whether `pid` runs with the environment `attempt`'s child was given: its
/// run, task, index and attempt number (a reused pid has other values).
fn runs_attempt(pid: i32, attempt: &AttemptRef) -> bool {
    if start_time(pid).is_none() {
        return false;
    }
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let expected = [
        format!("ORK_RUN_ID={}", attempt.run_id),
        format!("ORK_TASK={}", attempt.name),
        format!("ORK_TASK_INDEX={}", attempt.task_index),
        format!("ORK_ATTEMPT={}", attempt.attempt),
    ];
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    expected.iter().all(|e| vars.contains(&e.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn attempt() -> AttemptRef {
        AttemptRef {
            run_id: Uuid::new_v4(),
            workflow: "w".into(),
            version: 1,
            task_id: Uuid::new_v4(),
            name: "t".into(),
            task_index: 0,
            attempt: 1,
        }
    }

    #[test]
    fn a_live_watcher_or_another_space_is_not_judged() {
        let a = attempt();
        // This process is the watcher: alive.
        assert_eq!(fate(&execution_id(1), &a), Fate::Unknown);
        let (watcher, _) = me().unwrap();
        let elsewhere = format!("pid:1;watcher={watcher};space=another-boot.1");
        assert_eq!(fate(&elsewhere, &a), Fate::Unknown);
        assert_eq!(fate("pid:1", &a), Fate::Unknown);
        assert_eq!(fate("projects/p/jobs/j", &a), Fate::Unknown);
    }

    #[test]
    fn a_dead_watcher_leaves_its_child_ended_or_orphaned() {
        let a = attempt();
        let (_, space) = me().unwrap();
        // A watcher that is gone: this pid with another start time.
        let dead = format!("{}.1", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("ORK_RUN_ID", a.run_id.to_string())
            .env("ORK_TASK", &a.name)
            .env("ORK_TASK_INDEX", "0")
            .env("ORK_ATTEMPT", "1")
            .spawn()
            .unwrap();
        // The spawn returns once the child's exec has begun; the kernel
        // fills in its environment a moment later.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !runs_attempt(child.id() as i32, &a) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let id = format!("pid:{};watcher={dead};space={space}", child.id());
        assert_eq!(fate(&id, &a), Fate::Orphaned(child.id() as i32));
        // Another attempt's child is not this one's.
        let retried = AttemptRef {
            attempt: 2,
            ..a.clone()
        };
        assert_eq!(fate(&id, &retried), Fate::Ended);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(fate(&id, &a), Fate::Ended);
    }
}
