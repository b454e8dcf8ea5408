//! The contract of each `Tx` transition, on both backends: which rows it
//! changes, which events it appends, and that a stale call (a superseded
//! attempt, a row no longer in the expected state) changes nothing and
//! records nothing.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{AttemptResult, Finish, NewTask, Started, Store};
use crate::model::{Run, RunStatus, Task, TaskStatus};
use crate::testing::TestDb;

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// A noop task of a new run, one attempt.
fn noop_task(name: &str, task_count: i64, deps_remaining: i64) -> NewTask {
    NewTask {
        name: name.into(),
        task_count,
        executor: "noop".into(),
        max_attempts: 1,
        deps_remaining,
        ..NewTask::default()
    }
}

/// Applies workflow `wf` (once: the same hash adds no version) and creates
/// a new pending run of it with `tasks`, all of their instances open.
async fn run_with(store: &Store, tasks: &[NewTask]) -> Run {
    let open: i64 = tasks.iter().map(|t| t.task_count).sum();
    let run = Run {
        id: Uuid::now_v7(),
        workflow: "wf".into(),
        version: 1,
        status: RunStatus::Pending,
        params: serde_json::json!({}),
        trigger: "manual".into(),
        idempotency_key: None,
        tasks_total: open,
        tasks_open: open,
        tasks_failed: 0,
        error: None,
        created_at: now(),
        finished_at: None,
        cost_usd: None,
    };
    let mut tx = store.begin().await.unwrap();
    tx.save_workflow("wf", serde_json::json!({"name": "wf"}), "h1", None, now())
        .await
        .unwrap();
    assert!(tx.create_run(&run, tasks).await.unwrap());
    tx.commit().await.unwrap();
    run
}

/// [`run_with`] `a` (two instances, ready) and `b` (one instance, waiting
/// for both `a`s), two attempts each.
async fn run_of(store: &Store) -> Run {
    let task = |name, task_count, deps_remaining| NewTask {
        max_attempts: 2,
        ..noop_task(name, task_count, deps_remaining)
    };
    run_with(store, &[task("a", 2, 0), task("b", 1, 2)]).await
}

async fn events(store: &Store, run: Uuid) -> Vec<(Option<Uuid>, Option<i64>, String)> {
    store
        .run_events(run)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.task_id, e.attempt, e.status))
        .collect()
}

async fn tasks(store: &Store, run: Uuid) -> Vec<Task> {
    store.run_tasks(run).await.unwrap()
}

/// A claim of up to 100 of the run's ready instances, leased for a minute.
fn claim_of(run: Uuid) -> super::Claim<'static> {
    super::Claim {
        run_id: run,
        now: now(),
        lease_until: now() + Duration::seconds(60),
        limit: 100,
        executors: None,
        tasks: None,
        run_pending: true,
    }
}

/// Claims every ready instance of the run; returns them.
async fn claim_all(store: &Store, run: Uuid) -> Vec<super::ClaimedTask> {
    let mut tx = store.begin().await.unwrap();
    let claimed = tx.claim(&claim_of(run)).await.unwrap();
    tx.commit().await.unwrap();
    claimed
}

fn started(task_id: Uuid, attempt: i64) -> Started {
    Started {
        task_id,
        attempt,
        execution_id: format!("exec-{attempt}"),
        deadline: None,
    }
}

/// Records the start of an attempt as a dispatch does
/// ([`Store::mark_started`]: one statement on PostgreSQL).
async fn start(store: &Store, task_id: Uuid, attempt: i64) {
    let lease = now() + Duration::seconds(300);
    store
        .mark_started(&[started(task_id, attempt)], now(), lease)
        .await
        .unwrap();
}

/// [`start`] as a step of a transaction ([`super::Tx::mark_started`]).
async fn start_in_tx(store: &Store, task_id: Uuid, attempt: i64) {
    let mut tx = store.begin().await.unwrap();
    let lease = now() + Duration::seconds(300);
    tx.mark_started(&[started(task_id, attempt)], now(), lease)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

fn result(task_id: Uuid, attempt: i64, status: TaskStatus) -> AttemptResult {
    AttemptResult {
        task_id,
        attempt,
        status,
        exit_code: Some(0),
        error: None,
        output: Some(serde_json::json!({"n": attempt})),
        output_ref: None,
        not_before: None,
    }
}

async fn save_workflow_numbers_versions_and_skips_same_hash(db: TestDb) {
    let mut tx = db.store.begin().await.unwrap();
    let spec = serde_json::json!({"name": "wf"});
    assert_eq!(
        tx.save_workflow("wf", spec.clone(), "h1", None, now())
            .await
            .unwrap(),
        (1, true)
    );
    assert_eq!(
        tx.save_workflow("wf", spec.clone(), "h1", None, now())
            .await
            .unwrap(),
        (1, false),
        "the same hash stores nothing"
    );
    assert_eq!(
        tx.save_workflow("wf", spec, "h2", Some("wf.yaml".into()), now())
            .await
            .unwrap(),
        (2, true)
    );
    tx.commit().await.unwrap();
    let listed = db.store.list_workflows().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].latest_version, 2);
    assert_eq!(db.store.workflow_spec("wf", Some(1)).await.unwrap().0, 1);
}

async fn create_run_inserts_run_tasks_and_one_event(db: TestDb) {
    let run = run_of(&db.store).await;
    let stored = db.store.get_run(run.id).await.unwrap();
    assert_eq!(
        (stored.status, stored.tasks_total, stored.tasks_open),
        (RunStatus::Pending, 3, 3)
    );
    let t = tasks(&db.store, run.id).await;
    assert_eq!(t.len(), 3);
    assert!(t
        .iter()
        .all(|t| t.status == TaskStatus::Pending && t.attempt == 0));
    let ready: Vec<bool> = t.iter().map(|t| t.ready_at.is_some()).collect();
    assert_eq!(ready, [true, true, false]);
    assert_eq!(
        events(&db.store, run.id).await,
        [(None, None, "pending".to_owned())]
    );
    // The same idempotency key twice creates nothing the second time.
    let keyed = Run {
        id: Uuid::now_v7(),
        idempotency_key: Some("k".into()),
        ..run.clone()
    };
    let mut tx = db.store.begin().await.unwrap();
    assert!(tx.create_run(&keyed, &[]).await.unwrap());
    let again = Run {
        id: Uuid::now_v7(),
        ..keyed.clone()
    };
    assert!(!tx.create_run(&again, &[]).await.unwrap());
    tx.commit().await.unwrap();
    assert!(events(&db.store, again.id).await.is_empty());
}

async fn claim_takes_ready_tasks_once_and_starts_the_run(db: TestDb) {
    let run = run_of(&db.store).await;
    let claimed = claim_all(&db.store, run.id).await;
    assert_eq!(claimed.len(), 2, "only the ready `a`s");
    assert!(claimed.iter().all(|c| c.name == "a" && c.attempt == 1));
    let t = tasks(&db.store, run.id).await;
    assert_eq!(
        t.iter().map(|t| t.status).collect::<Vec<_>>(),
        [
            TaskStatus::Dispatched,
            TaskStatus::Dispatched,
            TaskStatus::Pending
        ]
    );
    assert!(t[0].lease_expires_at.is_some());
    assert_eq!(
        db.store.get_run(run.id).await.unwrap().status,
        RunStatus::Running
    );
    let ev = events(&db.store, run.id).await;
    assert_eq!(ev.len(), 1 + 2 + 1, "created, two dispatched, running");
    assert_eq!(ev.iter().filter(|e| e.2 == "dispatched").count(), 2);
    assert_eq!(ev.last().unwrap().2, "running");
    // Nothing more is ready: a second claim changes nothing.
    assert!(claim_all(&db.store, run.id).await.is_empty());
    assert_eq!(events(&db.store, run.id).await, ev);
}

async fn mark_started_moves_dispatched_to_running(db: TestDb) {
    let run = run_of(&db.store).await;
    let claimed = claim_all(&db.store, run.id).await;
    let before = events(&db.store, run.id).await.len();
    start(&db.store, claimed[0].id, 1).await;
    let t = db.store.get_task(claimed[0].id).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Running);
    assert_eq!(t.execution_id.as_deref(), Some("exec-1"));
    assert!(t.started_at.is_some());
    assert!(
        t.lease_expires_at.unwrap() > now() + Duration::seconds(200),
        "a started attempt has its start lease"
    );
    let ev = events(&db.store, run.id).await;
    assert_eq!(ev.len(), before + 1);
    assert_eq!(ev.last().unwrap(), &(Some(t.id), Some(1), "running".into()));
    // Stale: a superseded attempt number, or an attempt already running.
    start(&db.store, claimed[1].id, 7).await;
    start(&db.store, claimed[0].id, 1).await;
    start_in_tx(&db.store, claimed[1].id, 7).await;
    start_in_tx(&db.store, claimed[0].id, 1).await;
    assert_eq!(events(&db.store, run.id).await, ev);
    let other = db.store.get_task(claimed[1].id).await.unwrap().unwrap();
    assert_eq!(other.status, TaskStatus::Dispatched);
    // In a transaction, with the same row and event.
    start_in_tx(&db.store, claimed[1].id, 1).await;
    let other = db.store.get_task(claimed[1].id).await.unwrap().unwrap();
    assert_eq!(other.status, TaskStatus::Running);
    let mut ev = ev;
    ev.push((Some(other.id), Some(1), "running".into()));
    assert_eq!(events(&db.store, run.id).await, ev);
}

async fn finish_attempts_applies_only_attempts_in_flight(db: TestDb) {
    let run = run_of(&db.store).await;
    let claimed = claim_all(&db.store, run.id).await;
    start(&db.store, claimed[0].id, 1).await;
    let before = events(&db.store, run.id).await.len();
    let mut tx = db.store.begin().await.unwrap();
    let finished = tx
        .finish_attempts(
            &[
                result(claimed[0].id, 1, TaskStatus::Success),
                result(claimed[1].id, 1, TaskStatus::Pending),
                result(claimed[1].id, 2, TaskStatus::Success),
            ],
            Finish::InFlight,
            now(),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        finished.len(),
        2,
        "attempt 2 of the second `a` does not exist"
    );
    let a0 = db.store.get_task(claimed[0].id).await.unwrap().unwrap();
    assert_eq!(a0.status, TaskStatus::Success);
    assert!(a0.finished_at.is_some());
    assert_eq!(a0.output, Some(serde_json::json!({"n": 1})));
    let a1 = db.store.get_task(claimed[1].id).await.unwrap().unwrap();
    assert_eq!(
        a1.status,
        TaskStatus::Pending,
        "a retry goes back to pending"
    );
    assert!(a1.finished_at.is_none());
    let ev = events(&db.store, run.id).await;
    let mut new_events = ev[before..].to_vec();
    new_events.sort();
    let mut expected = vec![
        (Some(a0.id), Some(1), "success".to_owned()),
        (Some(a1.id), Some(1), "pending".to_owned()),
    ];
    expected.sort();
    assert_eq!(
        new_events, expected,
        "each event names the attempt that applied"
    );
    // Stale: a replay of a finished attempt.
    let mut tx = db.store.begin().await.unwrap();
    let replay = tx
        .finish_attempts(
            &[result(claimed[0].id, 1, TaskStatus::Failed)],
            Finish::InFlight,
            now(),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(replay.is_empty());
    assert_eq!(events(&db.store, run.id).await, ev);
    let a0_after = db.store.get_task(claimed[0].id).await.unwrap().unwrap();
    assert_eq!(a0_after.status, TaskStatus::Success);
}

async fn release_children_readies_a_group_at_zero(db: TestDb) {
    let run = run_of(&db.store).await;
    let before = events(&db.store, run.id).await;
    let b = |t: &[Task]| t.iter().find(|t| t.name == "b").cloned().unwrap();
    let release = |n| {
        let store = db.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            tx.release_children(run.id, &[("b".into(), n)], now())
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    release(1).await;
    let t = b(&tasks(&db.store, run.id).await);
    assert_eq!((t.deps_remaining, t.ready_at.is_some()), (2, false));
    release(1).await;
    let t = b(&tasks(&db.store, run.id).await);
    assert_eq!((t.deps_remaining, t.ready_at.is_some()), (0, true));
    // Readiness is not a transition: no event.
    assert_eq!(events(&db.store, run.id).await, before);
    let claimed = claim_all(&db.store, run.id).await;
    assert_eq!(claimed.iter().filter(|c| c.name == "b").count(), 1);
}

/// Several groups in one call (a batch of completions): each counted down,
/// only those at zero readied.
async fn release_children_counts_several_groups_in_one_call(db: TestDb) {
    let run = run_of(&db.store).await;
    let tasks_of = [
        noop_task("a", 1, 0),
        noop_task("b", 2, 2),
        noop_task("c", 3, 1),
    ];
    let other = run_with(&db.store, &tasks_of).await;
    let mut tx = db.store.begin().await.unwrap();
    tx.release_children(other.id, &[("c".into(), 1), ("b".into(), 1)], now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let all = tasks(&db.store, other.id).await;
    let of = |name: &str| -> Vec<(i64, bool)> {
        all.iter()
            .filter(|t| t.name == name)
            .map(|t| (t.deps_remaining, t.ready_at.is_some()))
            .collect()
    };
    assert_eq!(of("b"), vec![(2, false); 2], "b waits for one more parent");
    assert_eq!(of("c"), vec![(0, true); 3], "c's group reached zero");
    let claimed = claim_all(&db.store, other.id).await;
    let mut names: Vec<&str> = claimed.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a", "c", "c", "c"]);
    // The first run's groups are untouched.
    let b = tasks(&db.store, run.id).await;
    assert!(b.iter().all(|t| t.name != "b" || t.deps_remaining == 2));
}

async fn skip_pending_skips_only_pending_instances(db: TestDb) {
    let run = run_of(&db.store).await;
    let claimed = claim_all(&db.store, run.id).await;
    let before = events(&db.store, run.id).await.len();
    let mut tx = db.store.begin().await.unwrap();
    let skipped = tx
        .skip_pending(run.id, &["a".into(), "b".into()], "upstream failed", now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(skipped, 1, "the `a`s are dispatched, only `b` is pending");
    let t = tasks(&db.store, run.id).await;
    let b = t.iter().find(|t| t.name == "b").unwrap();
    assert_eq!(b.status, TaskStatus::Skipped);
    assert!(t
        .iter()
        .filter(|t| t.name == "a")
        .all(|t| t.status == TaskStatus::Dispatched));
    let ev = db.store.run_events(run.id).await.unwrap();
    assert_eq!(ev.len(), before + 1);
    let last = ev.last().unwrap();
    assert_eq!(
        (last.task_id, last.status.as_str(), last.detail.as_deref()),
        (Some(b.id), "skipped", Some("upstream failed"))
    );
    // Stale: nothing pending any more.
    let mut tx = db.store.begin().await.unwrap();
    assert_eq!(
        tx.skip_pending(run.id, &["b".into()], "again", now())
            .await
            .unwrap(),
        0
    );
    tx.commit().await.unwrap();
    assert_eq!(db.store.run_events(run.id).await.unwrap().len(), before + 1);
    assert_eq!(claimed.len(), 2);
}

async fn close_tasks_finalizes_the_run_exactly_once(db: TestDb) {
    let run = run_of(&db.store).await;
    let close = |closed, failed| {
        let store = db.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let closed = tx.close_tasks(run.id, closed, failed, now()).await.unwrap();
            tx.commit().await.unwrap();
            // Only the call that finalized the run sees a final status.
            closed.map(|r| r.status).filter(|s| s.is_final())
        }
    };
    assert_eq!(close(2, 0).await, None);
    let r = db.store.get_run(run.id).await.unwrap();
    assert_eq!(
        (r.tasks_open, r.tasks_failed, r.status),
        (1, 0, RunStatus::Pending)
    );
    let before = events(&db.store, run.id).await.len();
    assert_eq!(before, 1, "closing tasks is not a run transition");
    assert_eq!(close(1, 1).await, Some(RunStatus::Failed));
    let r = db.store.get_run(run.id).await.unwrap();
    assert_eq!(
        (r.tasks_open, r.tasks_failed, r.status),
        (0, 1, RunStatus::Failed)
    );
    assert!(r.finished_at.is_some());
    let ev = events(&db.store, run.id).await;
    assert_eq!(ev.last().unwrap(), &(None, None, "failed".to_owned()));
    // Stale: the run is final; nothing changes, nothing is recorded.
    assert_eq!(close(1, 0).await, None);
    let again = db.store.get_run(run.id).await.unwrap();
    assert_eq!((again.tasks_open, again.status), (0, RunStatus::Failed));
    assert_eq!(events(&db.store, run.id).await, ev);
}

async fn heartbeat_starts_a_dispatched_attempt_and_extends_a_running_one(db: TestDb) {
    let run = run_of(&db.store).await;
    let claimed = claim_all(&db.store, run.id).await;
    let id = claimed[0].id;
    let beat = |attempt, until| {
        let store = db.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let alive = tx.heartbeat(id, attempt, until, now()).await.unwrap();
            tx.commit().await.unwrap();
            alive
        }
    };
    let before = events(&db.store, run.id).await.len();
    let first = now() + Duration::seconds(30);
    assert!(beat(1, first).await);
    let t = db.store.get_task(id).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Running);
    let ev = events(&db.store, run.id).await;
    assert_eq!(ev.len(), before + 1);
    assert_eq!(
        ev.last().unwrap(),
        &(Some(id), Some(1), "running".to_owned())
    );
    let later = now() + Duration::seconds(90);
    assert!(beat(1, later).await);
    let t = db.store.get_task(id).await.unwrap().unwrap();
    assert!(t.lease_expires_at.unwrap() > first, "the lease moved on");
    assert_eq!(events(&db.store, run.id).await, ev, "extending is no event");
    // Stale: another attempt number.
    assert!(!beat(2, now() + Duration::seconds(900)).await);
    let t2 = db.store.get_task(id).await.unwrap().unwrap();
    assert_eq!(t2.lease_expires_at, t.lease_expires_at);
    assert_eq!(events(&db.store, run.id).await, ev);
}

async fn requeue_expired_claims_puts_back_only_expired_leases(db: TestDb) {
    let run = run_of(&db.store).await;
    let claimed = claim_all(&db.store, run.id).await;
    start(&db.store, claimed[1].id, 1).await;
    let requeue = |at| {
        let store = db.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let runs = tx.requeue_expired_claims(at, None).await.unwrap();
            tx.commit().await.unwrap();
            runs
        }
    };
    // Stale: the lease has not run out yet.
    let before = events(&db.store, run.id).await;
    assert!(requeue(now()).await.is_empty());
    assert_eq!(events(&db.store, run.id).await, before);
    assert_eq!(requeue(now() + Duration::seconds(120)).await, [run.id]);
    let t = db.store.get_task(claimed[0].id).await.unwrap().unwrap();
    assert_eq!((t.status, t.lease_expires_at), (TaskStatus::Pending, None));
    let running = db.store.get_task(claimed[1].id).await.unwrap().unwrap();
    assert_eq!(running.status, TaskStatus::Running, "started attempts stay");
    let ev = db.store.run_events(run.id).await.unwrap();
    assert_eq!(ev.len(), before.len() + 1);
    let last = ev.last().unwrap();
    assert_eq!(
        (last.task_id, last.status.as_str()),
        (Some(t.id), "pending")
    );
    // The next claim is a new attempt.
    let again = claim_all(&db.store, run.id).await;
    assert_eq!((again.len(), again[0].attempt), (1, 2));
}

async fn record_schedule_slot_never_moves_back(db: TestDb) {
    run_of(&db.store).await;
    let record = |slot| {
        let store = db.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            tx.record_schedule_slot("wf", slot).await.unwrap();
            tx.commit().await.unwrap();
        }
    };
    let slot = |s| DateTime::from_timestamp(s, 0).unwrap();
    record(slot(2_000)).await;
    assert_eq!(
        db.store.schedule_slots().await.unwrap(),
        [("wf".to_owned(), slot(2_000))]
    );
    record(slot(1_000)).await;
    assert_eq!(
        db.store.schedule_slots().await.unwrap(),
        [("wf".to_owned(), slot(2_000))],
        "an older slot changes nothing"
    );
    record(slot(3_000)).await;
    assert_eq!(
        db.store.schedule_slots().await.unwrap(),
        [("wf".to_owned(), slot(3_000))]
    );
}

async fn cancel_run_closes_unfinished_tasks_once(db: TestDb) {
    let run = run_of(&db.store).await;
    let claimed = claim_all(&db.store, run.id).await;
    start(&db.store, claimed[0].id, 1).await;
    let before = events(&db.store, run.id).await.len();
    let cancel = || {
        let store = db.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let in_flight = tx.cancel_run(run.id, now()).await.unwrap();
            tx.commit().await.unwrap();
            in_flight
        }
    };
    let in_flight = cancel().await.expect("the run was open");
    assert_eq!(in_flight.len(), 2, "one running, one dispatched");
    let r = db.store.get_run(run.id).await.unwrap();
    assert_eq!((r.status, r.tasks_open), (RunStatus::Cancelled, 0));
    assert!(tasks(&db.store, run.id)
        .await
        .iter()
        .all(|t| t.status == TaskStatus::Cancelled));
    let ev = events(&db.store, run.id).await;
    assert_eq!(ev.len(), before + 3 + 1, "three tasks and the run");
    assert_eq!(ev.last().unwrap(), &(None, None, "cancelled".to_owned()));
    // Stale: already final.
    assert!(cancel().await.is_none());
    assert_eq!(events(&db.store, run.id).await, ev);
    // A completion of a cancelled attempt changes nothing.
    let mut tx = db.store.begin().await.unwrap();
    let late = tx
        .finish_attempts(
            &[result(claimed[0].id, 1, TaskStatus::Success)],
            Finish::InFlight,
            now(),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(late.is_empty());
    assert_eq!(events(&db.store, run.id).await, ev);
}

async fn finish_attempts_fails_a_retry_past_max_attempts(db: TestDb) {
    let run = run_of(&db.store).await;
    let a = claim_all(&db.store, run.id).await[0].id;
    let finish = |attempt| {
        let store = db.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let done = tx
                .finish_attempts(
                    &[result(a, attempt, TaskStatus::Pending)],
                    Finish::InFlight,
                    now(),
                )
                .await
                .unwrap();
            tx.commit().await.unwrap();
            done
        }
    };
    // Attempt 1 of 2: the retry applies.
    assert_eq!(finish(1).await[0].status, TaskStatus::Pending);
    claim_all(&db.store, run.id).await;
    // Attempt 2 of 2: a retry asked past `max_attempts` fails.
    assert_eq!(finish(2).await[0].status, TaskStatus::Failed);
    let t = db.store.get_task(a).await.unwrap().unwrap();
    assert_eq!((t.status, t.attempt), (TaskStatus::Failed, 2));
    assert!(t.finished_at.is_some());
    let ev = events(&db.store, run.id).await;
    assert_eq!(ev.last().unwrap(), &(Some(a), Some(2), "failed".to_owned()));
}

async fn reopen_run_and_retry_tasks_put_unsuccessful_instances_back_once(db: TestDb) {
    let run = run_of(&db.store).await;
    let claimed = claim_all(&db.store, run.id).await;
    let mut tx = db.store.begin().await.unwrap();
    assert!(
        !tx.reopen_run(run.id).await.unwrap(),
        "an open run is not reopened"
    );
    drop(tx);
    let mut tx = db.store.begin().await.unwrap();
    tx.cancel_run(run.id, now()).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    let before = events(&db.store, run.id).await.len();

    let retry = |name: &str, deps| super::RetryTask {
        name: name.into(),
        attempts: 2,
        deps,
    };
    let mut tx = db.store.begin().await.unwrap();
    assert!(tx.reopen_run(run.id).await.unwrap());
    let mut counts = tx.task_status_counts(run.id).await.unwrap();
    counts.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        counts,
        [
            ("a".to_owned(), TaskStatus::Cancelled, 2),
            ("b".to_owned(), TaskStatus::Cancelled, 1)
        ]
    );
    let n = tx
        .retry_tasks(
            run.id,
            &[retry("a", 0), retry("b", 2)],
            "retry requested",
            now(),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(n, 3);
    // A second reopening finds the run running: nothing changes.
    let mut tx = db.store.begin().await.unwrap();
    assert!(!tx.reopen_run(run.id).await.unwrap());
    drop(tx);

    let r = db.store.get_run(run.id).await.unwrap();
    assert_eq!(
        (r.status, r.tasks_open, r.tasks_failed, r.finished_at),
        (RunStatus::Running, 3, 0, None)
    );
    for t in tasks(&db.store, run.id).await {
        assert_eq!((t.status, t.finished_at), (TaskStatus::Pending, None));
        assert_eq!(t.max_attempts, t.attempt + 2, "{}", t.name);
        // a is ready at once; b waits for both a's again.
        let ready = t.name == "a";
        assert_eq!(
            (t.deps_remaining == 0, t.ready_at.is_some()),
            (ready, ready)
        );
    }
    let ev = events(&db.store, run.id).await;
    assert_eq!(ev.len(), before + 3 + 1, "three tasks and the run");
    assert_eq!(ev.last().unwrap(), &(None, None, "running".to_owned()));
    // The a's are claimed again, on a new attempt.
    let again = claim_all(&db.store, run.id).await;
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|c| c.attempt == 2));
    assert!(claimed.iter().all(|c| c.attempt == 1));
}

/// A task of many instances (on PostgreSQL, one `unnest` statement) gets
/// every index once, each instance its own id, ready when its task is.
async fn create_run_numbers_the_instances_of_a_fanned_out_task(db: TestDb) {
    let task = |name, task_count, deps_remaining| NewTask {
        limit_key: Some("it's \"quoted\", {braced}".into()),
        ..noop_task(name, task_count, deps_remaining)
    };
    let run = run_with(&db.store, &[task("wide", 2500, 0), task("after", 1, 1)]).await;
    let t = tasks(&db.store, run.id).await;
    let wide: Vec<&Task> = t.iter().filter(|t| t.name == "wide").collect();
    let mut indexes: Vec<i64> = wide.iter().map(|t| t.task_index).collect();
    indexes.sort();
    assert_eq!(indexes, (0..2500).collect::<Vec<_>>());
    let ids: std::collections::HashSet<Uuid> = t.iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), 2501);
    assert!(wide
        .iter()
        .all(|t| t.task_count == 2500 && t.ready_at.is_some() && t.attempt == 0));
    let after = t.iter().find(|t| t.name == "after").unwrap();
    assert!(after.ready_at.is_none() && after.deps_remaining == 1);
}

/// A run with a deferred group: `start` (one instance, ready), `wide`
/// (250 instances after `start`'s `parents` successes) and `tail` (after
/// the 250). Its instances do not exist until the group is taken.
async fn deferred_run_of(store: &Store, parents: i64) -> Run {
    let task = |name, task_count, deps_remaining| NewTask {
        max_attempts: 3,
        limit_key: Some("k".into()),
        ..noop_task(name, task_count, deps_remaining)
    };
    let tasks = [
        task("start", 1, 0),
        task("wide", 250, parents),
        task("tail", 1, 250),
    ];
    run_with(store, &tasks).await
}

/// The instances of a run's `wide` group, checked whole: every index
/// once, each its own id, as the group said they would be.
async fn wide_instances(store: &Store, run: Uuid) -> Vec<Task> {
    let wide: Vec<Task> = tasks(store, run)
        .await
        .into_iter()
        .filter(|t| t.name == "wide")
        .collect();
    let mut indexes: Vec<i64> = wide.iter().map(|t| t.task_index).collect();
    indexes.sort();
    let ids: std::collections::HashSet<Uuid> = wide.iter().map(|t| t.id).collect();
    if !wide.is_empty() {
        assert_eq!(indexes, (0..250).collect::<Vec<_>>());
        assert_eq!(ids.len(), 250);
        assert!(wide
            .iter()
            .all(|t| (t.task_count, t.max_attempts, t.executor.as_str()) == (250, 3, "noop")));
    }
    wide
}

/// A fanned-out task with parents has no instance until its group reaches
/// zero; then the release that takes it there creates them all, ready,
/// once, however many releases race (each parent's success its own
/// transaction). Until then the run's groups show them pending.
async fn a_deferred_group_is_created_once_by_the_release_that_readies_it(db: TestDb) {
    let run = deferred_run_of(&db.store, 8).await;
    assert!(wide_instances(&db.store, run.id).await.is_empty());
    let groups = db.store.run_task_groups(run.id).await.unwrap();
    let wide = groups.iter().find(|g| g.name == "wide").unwrap();
    assert_eq!(
        (
            wide.status.as_str(),
            wide.n,
            wide.task_count,
            wide.executor.as_str()
        ),
        ("pending", 250, 250, "noop")
    );
    let before = events(&db.store, run.id).await;
    let releases = (0..8).map(|_| {
        let store = db.store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            tx.release_children(run.id, &[("wide".into(), 1)], now())
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    });
    for r in futures::future::join_all(releases).await {
        r.unwrap();
    }
    let wide = wide_instances(&db.store, run.id).await;
    assert_eq!(wide.len(), 250);
    assert!(wide.iter().all(|t| t.status == TaskStatus::Pending
        && t.deps_remaining == 0
        && t.ready_at.is_some()
        && t.attempt == 0));
    let groups = db.store.run_task_groups(run.id).await.unwrap();
    let shown: Vec<(&str, &str, i64)> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.status.as_str(), g.n))
        .collect();
    assert_eq!(
        shown,
        [
            ("start", "pending", 1),
            ("tail", "pending", 1),
            ("wide", "pending", 250)
        ]
    );
    // Readiness is not a transition: no event.
    assert_eq!(events(&db.store, run.id).await, before);
    let claimed = claim_all(&db.store, run.id).await;
    assert_eq!(
        claimed.len(),
        100,
        "start and 99 of wide, the claim's limit"
    );
    // Released again (a bug's double count): nothing more is created.
    let mut tx = db.store.begin().await.unwrap();
    tx.release_children(run.id, &[("wide".into(), 0)], now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(wide_instances(&db.store, run.id).await.len(), 250);
}

/// A deferred group skipped (a parent failed) or cancelled gets its
/// instances then, in that state, each with its event: what `ork retry`
/// reopens. Racing skips and a cancel create them once.
async fn a_deferred_group_skipped_or_cancelled_gets_its_instances_once(db: TestDb) {
    let run = deferred_run_of(&db.store, 1).await;
    let before = events(&db.store, run.id).await.len();
    let skips = (0..4).map(|_| {
        let store = db.store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let names = ["wide".to_owned(), "tail".to_owned()];
            let n = tx
                .skip_pending(run.id, &names, "upstream task start failed", now())
                .await
                .unwrap();
            tx.commit().await.unwrap();
            n
        })
    });
    let skipped: Vec<i64> = futures::future::join_all(skips)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(skipped.iter().sum::<i64>(), 251, "{skipped:?}");
    let wide = wide_instances(&db.store, run.id).await;
    assert_eq!(wide.len(), 250);
    assert!(wide.iter().all(|t| t.status == TaskStatus::Skipped));
    assert_eq!(events(&db.store, run.id).await.len(), before + 251);

    // Cancelled, racing the release that would ready it.
    let run = deferred_run_of(&db.store, 1).await;
    let store = db.store.clone();
    let release = tokio::spawn(async move {
        let mut tx = store.begin().await.unwrap();
        tx.release_children(run.id, &[("wide".into(), 1)], now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    });
    let mut tx = db.store.begin().await.unwrap();
    assert!(tx.cancel_run(run.id, now()).await.unwrap().is_some());
    tx.commit().await.unwrap();
    release.await.unwrap();
    let wide = wide_instances(&db.store, run.id).await;
    assert_eq!(wide.len(), 250);
    let statuses: std::collections::HashSet<TaskStatus> = tasks(&db.store, run.id)
        .await
        .iter()
        .map(|t| t.status)
        .collect();
    assert_eq!(statuses, [TaskStatus::Cancelled].into());
    assert!(claim_all(&db.store, run.id).await.is_empty());
}

/// `lock_ready` takes ready instances without writing them (on
/// PostgreSQL, a racing transaction skips them); `Finish::Locked` writes
/// claim and end in one row version with both events, once.
async fn lock_ready_and_finish_locked_claim_and_end_in_one_write(db: TestDb) {
    let run = run_of(&db.store).await;
    let noop = [crate::spec::ExecutorKind::Noop];
    let mut tx = db.store.begin().await.unwrap();
    let locked = tx.lock_ready(&claim_of(run.id), &noop).await.unwrap();
    assert_eq!(locked.len(), 2, "the two ready `a`s");
    assert!(locked.iter().all(|t| t.name == "a" && t.attempt == 1));
    if db.store.dialect() == super::Dialect::Postgres {
        let mut racing = db.store.begin().await.unwrap();
        let none = racing.lock_ready(&claim_of(run.id), &noop).await.unwrap();
        assert!(none.is_empty(), "locked rows are skipped");
        assert!(racing.claim(&claim_of(run.id)).await.unwrap().is_empty());
        racing.commit().await.unwrap();
    }
    let failed = AttemptResult {
        not_before: Some(now()),
        ..result(locked[1].id, 1, TaskStatus::Pending)
    };
    let done = tx
        .finish_attempts(
            &[result(locked[0].id, 1, TaskStatus::Success), failed],
            Finish::Locked,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    tx.commit().await.unwrap();
    let a0 = db.store.get_task(locked[0].id).await.unwrap().unwrap();
    assert_eq!((a0.status, a0.attempt), (TaskStatus::Success, 1));
    assert!(a0.dispatched_at.is_some() && a0.finished_at.is_some());
    let a1 = db.store.get_task(locked[1].id).await.unwrap().unwrap();
    assert_eq!(
        (a1.status, a1.attempt),
        (TaskStatus::Pending, 1),
        "a retry left: pending again, its attempt counted"
    );
    let ev = events(&db.store, run.id).await;
    let of = |id: Uuid| -> Vec<String> {
        ev.iter()
            .filter(|e| e.0 == Some(id))
            .map(|e| e.2.clone())
            .collect()
    };
    assert_eq!(of(a0.id), ["dispatched", "success"]);
    assert_eq!(of(a1.id), ["dispatched", "pending"]);
    assert_eq!(ev.iter().filter(|e| e.2 == "running").count(), 1);
    // Replayed, or for a row another caller claimed: nothing changes.
    let finish_locked = |r: AttemptResult| {
        let store = db.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let done = tx
                .finish_attempts(&[r], Finish::Locked, now())
                .await
                .unwrap();
            tx.commit().await.unwrap();
            done
        }
    };
    let again = finish_locked(result(a0.id, 1, TaskStatus::Failed)).await;
    assert!(again.is_empty());
    let claimed = claim_all(&db.store, run.id).await;
    assert_eq!(claimed.len(), 1, "the retry of a[1]");
    let stale = finish_locked(result(a1.id, 2, TaskStatus::Success)).await;
    assert!(stale.is_empty(), "a claimed row is not locked-pending");
    assert_eq!(
        db.store.get_task(a1.id).await.unwrap().unwrap().status,
        TaskStatus::Dispatched
    );
}

/// A transaction's events are written when it commits, in the order of its
/// steps; a step that reads them (a finalized run's cost) sees its own.
async fn a_transactions_events_keep_their_order_and_its_reads_see_them(db: TestDb) {
    let run = run_of(&db.store).await;
    let mut tx = db.store.begin().await.unwrap();
    let claimed = tx.claim(&claim_of(run.id)).await.unwrap();
    let results: Vec<AttemptResult> = claimed
        .iter()
        .map(|c| result(c.id, c.attempt, TaskStatus::Success))
        .collect();
    tx.finish_attempts(&results, Finish::InFlight, now())
        .await
        .unwrap();
    let (_, seen) = tx.cost_inputs(run.id).await.unwrap();
    let mut seen: Vec<(Uuid, String)> = seen.into_iter().map(|e| (e.task_id, e.status)).collect();
    seen.sort();
    let mut expected: Vec<(Uuid, String)> = claimed
        .iter()
        .flat_map(|c| {
            [
                (c.id, "dispatched".to_owned()),
                (c.id, "success".to_owned()),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "the transaction reads the events it wrote");
    tx.skip_pending(run.id, &["b".to_owned()], "test", now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let statuses: Vec<String> = events(&db.store, run.id)
        .await
        .into_iter()
        .map(|(_, _, status)| status)
        .collect();
    assert_eq!(
        statuses,
        [
            "pending",
            "dispatched",
            "dispatched",
            "running",
            "success",
            "success",
            "skipped"
        ],
        "one event per change, in the order of the steps"
    );
}

/// A batch of more attempts than one statement takes (a thousand) ends
/// each attempt as sent, its values and NULLs in their places, and logs
/// the events in the order of the rows (PostgreSQL sends the batch as
/// arrays, SQLite as rows of values).
async fn finish_attempts_of_a_large_batch_applies_each_attempt_as_sent(db: TestDb) {
    const N: i64 = 2_500;
    let task = NewTask {
        max_attempts: 2,
        ..noop_task("a", N, 0)
    };
    let run = run_with(&db.store, &[task]).await;
    let mut tx = db.store.begin().await.unwrap();
    let claimed = tx
        .claim(&super::Claim {
            limit: N,
            ..claim_of(run.id)
        })
        .await
        .unwrap();
    assert_eq!(claimed.len() as i64, N);
    let later = now() + Duration::seconds(30);
    let results: Vec<AttemptResult> = claimed
        .iter()
        .map(|c| match c.task_index % 3 {
            0 => AttemptResult {
                exit_code: Some(1),
                error: Some(format!("boom {}", c.task_index)),
                output: None,
                ..result(c.id, c.attempt, TaskStatus::Failed)
            },
            1 => AttemptResult {
                output: Some(serde_json::json!({"i": c.task_index})),
                ..result(c.id, c.attempt, TaskStatus::Success)
            },
            _ => AttemptResult {
                exit_code: None,
                output: None,
                not_before: Some(later),
                ..result(c.id, c.attempt, TaskStatus::Pending)
            },
        })
        .collect();
    let finished = tx
        .finish_attempts(&results, Finish::InFlight, now())
        .await
        .unwrap();
    assert_eq!(finished.len() as i64, N, "every attempt in flight ends");
    tx.commit().await.unwrap();
    for t in tasks(&db.store, run.id).await {
        let i = t.task_index;
        let expected = match i % 3 {
            0 => (
                TaskStatus::Failed,
                Some(1),
                Some(format!("boom {i}")),
                None,
                None,
            ),
            1 => (
                TaskStatus::Success,
                Some(0),
                None,
                Some(serde_json::json!({"i": i})),
                None,
            ),
            _ => (
                TaskStatus::Pending,
                None,
                None,
                None,
                Some(later.timestamp()),
            ),
        };
        let got = (
            t.status,
            t.exit_code,
            t.error.clone(),
            t.output.clone(),
            t.not_before.map(|at| at.timestamp()),
        );
        assert_eq!(got, expected, "instance {i}");
    }
    // After the run's and the claims' events, the ends, by task id.
    let mut ids: Vec<Uuid> = claimed.iter().map(|c| c.id).collect();
    ids.sort();
    let ends: Vec<(Option<Uuid>, String)> = db
        .store
        .run_events(run.id)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .take(N as usize)
        .rev()
        .map(|e| (e.task_id, e.detail.unwrap_or_default()))
        .collect();
    let index: std::collections::HashMap<Uuid, i64> =
        claimed.iter().map(|c| (c.id, c.task_index)).collect();
    let expected: Vec<(Option<Uuid>, String)> = ids
        .iter()
        .map(|id| {
            let i = index[id];
            let detail = if i % 3 == 0 {
                format!("boom {i}")
            } else {
                String::new()
            };
            (Some(*id), detail)
        })
        .collect();
    assert_eq!(ends, expected, "the ends' events, in the rows' order");
}

/// A transaction dropped without commit leaves nothing behind.
async fn a_dropped_transaction_rolls_back(db: TestDb) {
    let run = run_of(&db.store).await;
    let before = events(&db.store, run.id).await;
    {
        let mut tx = db.store.begin().await.unwrap();
        let claimed = tx.claim(&claim_of(run.id)).await.unwrap();
        assert_eq!(claimed.len(), 2);
    }
    assert!(tasks(&db.store, run.id)
        .await
        .iter()
        .all(|t| t.status == TaskStatus::Pending));
    assert_eq!(events(&db.store, run.id).await, before);
}

/// The local attempts an `ork run` watches (their execution id names the
/// watcher) are the ones the sweeper asks about at every tick; a bare
/// `pid:N` (a detached `ork worker`, which reports for itself) and other
/// executors' ids are not.
async fn watched_local_attempts_are_polled(db: TestDb) {
    let task = |name: &str, executor: &str| NewTask {
        executor: executor.into(),
        ..noop_task(name, 1, 0)
    };
    let new = [
        task("bare", "process"),
        task("watched", "process"),
        task("other", "noop"),
    ];
    let run = run_with(&db.store, &new).await;
    let claimed = claim_all(&db.store, run.id).await;
    assert_eq!(claimed.len(), 3);
    let id = |name: &str| claimed.iter().find(|t| t.name == name).unwrap().id;
    let polled = || async { db.store.next_due_at(now()).await.unwrap().polled };
    assert_eq!(polled().await, 0);

    let watched = "pid:7;watcher=9.123;space=boot.1";
    let starts = [("bare", "pid:8".to_owned()), ("other", watched.to_owned())];
    for (name, execution_id) in starts {
        let start = Started {
            execution_id,
            ..started(id(name), 1)
        };
        let lease = now() + Duration::seconds(300);
        db.store.mark_started(&[start], now(), lease).await.unwrap();
    }
    assert_eq!(polled().await, 0);
    assert!(db.store.watched_attempts(10).await.unwrap().is_empty());

    let start = Started {
        execution_id: watched.into(),
        ..started(id("watched"), 1)
    };
    let lease = now() + Duration::seconds(300);
    db.store.mark_started(&[start], now(), lease).await.unwrap();
    assert_eq!(polled().await, 1);
    let found = db.store.watched_attempts(10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].task.name, "watched");
    assert_eq!(found[0].workflow, "wf");
}

/// A running attempt of each executor the sweeper polls makes a host
/// sweep at every tick, and no longer once it has ended.
async fn running_attempts_of_polled_executors_are_polled(db: TestDb) {
    use crate::engine::sweep::POLLED;
    let new: Vec<NewTask> = POLLED
        .iter()
        .map(|kind| NewTask {
            executor: kind.as_str().into(),
            ..noop_task(kind.as_str(), 1, 0)
        })
        .collect();
    let run = run_with(&db.store, &new).await;
    let claimed = claim_all(&db.store, run.id).await;
    assert_eq!(claimed.len(), POLLED.len());
    let polled = || async { db.store.next_due_at(now()).await.unwrap().polled };
    for task in &claimed {
        assert_eq!(polled().await, 0, "before {}", task.name);
        start(&db.store, task.id, 1).await;
        assert_eq!(polled().await, 1, "{} running", task.name);
        let mut tx = db.store.begin().await.unwrap();
        let done = [result(task.id, 1, TaskStatus::Success)];
        tx.finish_attempts(&done, Finish::InFlight, now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(polled().await, 0);
}

/// A run's tasks with no instance yet, a `foreach` child (no instance
/// until its parent succeeds) and a deferred fan-out, are listed as
/// waiting with their executors; a task with instances is not.
async fn run_waiting_groups_lists_the_tasks_with_no_instance_yet(db: TestDb) {
    let task = |name, task_count, deps_remaining| NewTask {
        executor: "process".into(),
        ..noop_task(name, task_count, deps_remaining)
    };
    let run = run_with(
        &db.store,
        &[
            task("start", 1, 0),
            task("each", 0, 1),
            task("wide", 150, 1),
        ],
    )
    .await;
    let waiting: Vec<(String, Option<i64>, Option<String>)> = db
        .store
        .run_waiting_groups(run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.name, g.task_count, g.executor))
        .collect();
    let process = Some("process".to_owned());
    assert_eq!(
        waiting,
        [
            ("each".to_owned(), None, process.clone()),
            ("wide".to_owned(), Some(150), process),
        ]
    );
}

crate::on_both_backends!(
    run_waiting_groups_lists_the_tasks_with_no_instance_yet,
    watched_local_attempts_are_polled,
    running_attempts_of_polled_executors_are_polled,
    save_workflow_numbers_versions_and_skips_same_hash,
    create_run_inserts_run_tasks_and_one_event,
    claim_takes_ready_tasks_once_and_starts_the_run,
    mark_started_moves_dispatched_to_running,
    finish_attempts_applies_only_attempts_in_flight,
    release_children_readies_a_group_at_zero,
    release_children_counts_several_groups_in_one_call,
    skip_pending_skips_only_pending_instances,
    close_tasks_finalizes_the_run_exactly_once,
    heartbeat_starts_a_dispatched_attempt_and_extends_a_running_one,
    requeue_expired_claims_puts_back_only_expired_leases,
    record_schedule_slot_never_moves_back,
    cancel_run_closes_unfinished_tasks_once,
    finish_attempts_fails_a_retry_past_max_attempts,
    reopen_run_and_retry_tasks_put_unsuccessful_instances_back_once,
    a_dropped_transaction_rolls_back,
    a_transactions_events_keep_their_order_and_its_reads_see_them,
    create_run_numbers_the_instances_of_a_fanned_out_task,
    lock_ready_and_finish_locked_claim_and_end_in_one_write,
    finish_attempts_of_a_large_batch_applies_each_attempt_as_sent,
    a_deferred_group_is_created_once_by_the_release_that_readies_it,
    a_deferred_group_skipped_or_cancelled_gets_its_instances_once,
);
