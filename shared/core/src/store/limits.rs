//! The claim under limits (docs/concurrency.md): `max_runs` and run keys,
//! `max_parallel`, task keys and rate limits, checked and taken in the
//! claim's transaction.
//!
//! Claims of a run with limits first lock one `limits` row per limit they
//! check (an upsert, in key order: no deadlock), so two claims under the
//! same limit never interleave; each statement after the lock reads what
//! the previous holder committed (PostgreSQL's read committed; SQLite's
//! single writer). The attempts in flight are counted from the task rows
//! themselves (by `limit_group` / `limit_key`, indexed), so a slot frees
//! with the status change that ends an attempt, on every path (completion,
//! sweep, cancel): there is no counter to leak.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::sql::Sql;
use super::statements::*;
use super::writes::{Claim, ClaimedTask};
use super::{IdRow, Tx};
use crate::model::RunStatus;
use crate::Error;

/// The limits a run's claims are checked against, built by the engine
/// from the workflow's spec and the run's params.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClaimLimits {
    /// Admission of the run itself, while it has not started.
    pub run: Option<RunGate>,
    /// By task name.
    pub tasks: HashMap<String, TaskGate>,
}

#[derive(Debug, Clone)]
pub(crate) struct RunGate {
    pub workflow: String,
    pub max_runs: Option<i64>,
    /// The run's key and the limit of runs in flight under it.
    pub key: Option<(String, i64)>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct TaskGate {
    /// `max_parallel`: `(group, limit)`.
    pub group: Option<(String, i64)>,
    /// `concurrency`: `(rendered key, limit)`.
    pub key: Option<(String, i64)>,
    pub rate: Option<RateGate>,
}

#[derive(Debug, Clone)]
pub(crate) struct RateGate {
    pub name: String,
    /// The time one token takes to come back (`1 / per_second`).
    pub interval: Duration,
    pub cost: u32,
}

impl RunGate {
    fn locks(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if self.max_runs.is_some() {
            keys.push(format!("runs:{}", self.workflow));
        }
        if let Some((k, _)) = &self.key {
            keys.push(format!("runkey:{}/{k}", self.workflow));
        }
        keys
    }
}

impl ClaimLimits {
    /// The `limits` rows to lock, sorted and unique.
    fn locks(&self) -> Vec<String> {
        let mut keys = self.run.as_ref().map(RunGate::locks).unwrap_or_default();
        for g in self.tasks.values() {
            if let Some((k, _)) = &g.group {
                keys.push(format!("group:{k}"));
            }
            if let Some((k, _)) = &g.key {
                keys.push(format!("key:{k}"));
            }
            if let Some(r) = &g.rate {
                keys.push(rate_lock(&r.name));
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

fn rate_lock(name: &str) -> String {
    format!("rate:{name}")
}

#[derive(sqlx::FromRow)]
struct Locked {
    key: String,
    next_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Gate {
    status: Option<String>,
    runs: i64,
    keyed: i64,
}

#[derive(sqlx::FromRow)]
struct Candidate {
    id: Uuid,
    name: String,
}

#[derive(sqlx::FromRow)]
struct InFlight {
    kind: String,
    k: Option<String>,
    n: i64,
}

/// What a claim takes: the instances that fit, the ones a rate limit
/// holds back (by when its token is due), the rate limits' new `next_at`.
#[derive(Default)]
struct Plan {
    chosen: Vec<Uuid>,
    deferred: HashMap<DateTime<Utc>, Vec<Uuid>>,
    tokens: HashMap<String, DateTime<Utc>>,
}

/// How far back a rate limit's tokens accrue while nobody claims: the lag
/// of a wake-up (a sweep, a busy database) is made up, an idle limit gives
/// no long burst: 5 tokens or a quarter second's, at most one second's.
fn accrual(interval: Duration) -> Duration {
    (interval * 5)
        .max(Duration::from_millis(250))
        .min(Duration::from_secs(1))
        .max(interval)
}

impl Tx {
    /// [`Tx::claim`] under limits: up to `limit` ready instances of the run
    /// that fit under every limit they are subject to. Instances a rate
    /// limit holds back get `not_before` = when its next token is due, so
    /// the sweeper comes back for them then; ones a concurrency limit holds
    /// back wait for the completion that frees a slot
    /// ([`Tx::waiting_runs`]).
    pub(crate) async fn claim_limited(
        &mut self,
        claim: &Claim<'_>,
        limits: &ClaimLimits,
    ) -> Result<Vec<ClaimedTask>, Error> {
        let Claim {
            run_id,
            now,
            lease_until,
            ..
        } = *claim;
        let candidates = self.claim_candidates(claim).await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let locks = limits.locks();
        // An optimistic pass without the locks first: most claims under a
        // busy limit find it full, and leave without waiting for its lock.
        // (A slot freed after this read is taken by the advance that the
        // completion freeing it asks for.)
        let peeked = self.peek_limits(&locks).await?;
        if !self.run_admitted(run_id, limits).await? {
            return Ok(Vec::new());
        }
        let plan = self.plan(&candidates, limits, &peeked, now).await?;
        if plan.chosen.is_empty() {
            self.defer(plan.deferred).await?;
            return Ok(Vec::new());
        }
        let next_at = self.lock_limits(&locks).await?;
        // The time the tokens are counted at is after the wait for the lock.
        let now = Utc::now().max(now);
        if !self.run_admitted(run_id, limits).await? {
            return Ok(Vec::new());
        }
        let Plan {
            chosen,
            deferred,
            tokens,
        } = self.plan(&candidates, limits, &next_at, now).await?;
        for (name, next) in &tokens {
            self.conn()
                .execute(
                    Sql::new(SET_LIMIT_NEXT_AT)
                        .bind(rate_lock(name))
                        .bind(*next),
                )
                .await?;
        }
        self.defer(deferred).await?;
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(CLAIM_IDS_HEAD).bind(now).bind(lease_until);
        sql.push_list(chosen);
        sql.push(CLAIM_TAIL);
        let claimed: Vec<ClaimedTask> = self.conn().fetch_all(sql).await?;
        // The tokens were counted at the later `now`.
        self.claimed(&Claim { now, ..*claim }, &claimed).await?;
        Ok(claimed)
    }

    /// The run may start (or has): its run limits have room.
    async fn run_admitted(&mut self, run_id: Uuid, limits: &ClaimLimits) -> Result<bool, Error> {
        let Some(gate) = &limits.run else {
            return Ok(true);
        };
        let (key, key_limit) = gate.key.clone().map_or((None, 0), |(k, n)| (Some(k), n));
        let g: Option<Gate> = self
            .conn()
            .fetch_optional(
                Sql::new(RUN_GATE)
                    .bind(run_id)
                    .bind(gate.workflow.as_str())
                    .bind(key.clone()),
            )
            .await?;
        let Some(g) = g else { return Ok(false) };
        let started = g.status.as_deref() != Some(RunStatus::Pending.as_str());
        let full =
            gate.max_runs.is_some_and(|m| g.runs >= m) || (key.is_some() && g.keyed >= key_limit);
        Ok(started || !full)
    }

    async fn claim_candidates(&mut self, claim: &Claim<'_>) -> Result<Vec<Candidate>, Error> {
        let mut sql = Sql::new(CLAIM_CANDIDATES_HEAD)
            .bind(claim.run_id)
            .bind(claim.now)
            .bind(claim.limit);
        claim.push_filters(&mut sql, self.conn().dialect());
        sql.push(CLAIM_CANDIDATES_TAIL);
        Ok(self.conn().fetch_all(sql).await?)
    }

    /// The `next_at` of these limits, read without locking.
    async fn peek_limits(
        &mut self,
        locks: &[String],
    ) -> Result<HashMap<String, Option<DateTime<Utc>>>, Error> {
        if locks.is_empty() {
            return Ok(HashMap::new());
        }
        let mut sql = Sql::new(PEEK_LIMITS_HEAD);
        sql.push_list(locks.iter().map(String::as_str));
        sql.push(")");
        let rows: Vec<Locked> = self.conn().fetch_all(sql).await?;
        Ok(rows.into_iter().map(|l| (l.key, l.next_at)).collect())
    }

    /// Which candidates fit under their limits, given the attempts in
    /// flight (read now) and the rate limits' `next_at`.
    async fn plan(
        &mut self,
        candidates: &[Candidate],
        limits: &ClaimLimits,
        next_at: &HashMap<String, Option<DateTime<Utc>>>,
        now: DateTime<Utc>,
    ) -> Result<Plan, Error> {
        let gates = |n: &str| limits.tasks.get(n);
        let mut groups: Vec<String> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        for cand in candidates {
            if let Some(g) = gates(&cand.name) {
                groups.extend(g.group.as_ref().map(|(k, _)| k.clone()));
                keys.extend(g.key.as_ref().map(|(k, _)| k.clone()));
            }
        }
        groups.sort();
        groups.dedup();
        keys.sort();
        keys.dedup();
        let mut in_flight: HashMap<(bool, String), i64> = HashMap::new();
        if !groups.is_empty() || !keys.is_empty() {
            let mut sql = Sql::new(IN_FLIGHT_GROUPS);
            push_list_or_null(&mut sql, &groups);
            sql.push(IN_FLIGHT_KEYS);
            push_list_or_null(&mut sql, &keys);
            sql.push(IN_FLIGHT_TAIL);
            let rows: Vec<InFlight> = self.conn().fetch_all(sql).await?;
            for r in rows {
                if let Some(k) = r.k {
                    in_flight.insert((r.kind == "group", k), r.n);
                }
            }
        }
        // Rate limits: the time of the next token (a new limit's first is
        // now), made up to `accrual` in the past.
        let mut plan = Plan::default();
        for cand in candidates {
            let Some(g) = gates(&cand.name) else {
                plan.chosen.push(cand.id);
                continue;
            };
            let fits = |group: bool, gate: &Option<(String, i64)>| {
                gate.as_ref().is_none_or(|(k, n)| {
                    in_flight.get(&(group, k.clone())).copied().unwrap_or(0) < *n
                })
            };
            if !fits(true, &g.group) || !fits(false, &g.key) {
                continue;
            }
            if let Some(r) = &g.rate {
                let floor =
                    now - chrono::TimeDelta::from_std(accrual(r.interval)).unwrap_or_default();
                let next = plan.tokens.entry(r.name.clone()).or_insert_with(|| {
                    next_at
                        .get(&rate_lock(&r.name))
                        .copied()
                        .flatten()
                        .map_or(now, |t| t.max(floor))
                });
                if *next > now {
                    plan.deferred.entry(*next).or_default().push(cand.id);
                    continue;
                }
                *next += chrono::TimeDelta::from_std(r.interval * r.cost).unwrap_or_default();
            }
            for (group, gate) in [(true, &g.group), (false, &g.key)] {
                if let Some((k, _)) = gate {
                    *in_flight.entry((group, k.clone())).or_default() += 1;
                }
            }
            plan.chosen.push(cand.id);
        }
        Ok(plan)
    }

    /// Instances waiting for a rate limit's token: not before it is due.
    async fn defer(&mut self, deferred: HashMap<DateTime<Utc>, Vec<Uuid>>) -> Result<(), Error> {
        for (at, ids) in deferred {
            let mut sql = Sql::new(DEFER_TASKS_HEAD).bind(at);
            sql.push_list(ids);
            sql.push(")");
            self.conn().execute(sql).await?;
        }
        Ok(())
    }

    /// Locks the `limits` rows of these keys (sorted) until commit; their
    /// `next_at`, by key.
    async fn lock_limits(
        &mut self,
        locks: &[String],
    ) -> Result<HashMap<String, Option<DateTime<Utc>>>, Error> {
        if locks.is_empty() {
            return Ok(HashMap::new());
        }
        let mut sql = Sql::new(LOCK_LIMITS_HEAD);
        sql.push_values(locks, |s, k| vec![s.arg(k.as_str())]);
        sql.push(LOCK_LIMITS_TAIL);
        let locked: Vec<Locked> = self.conn().fetch_all(sql).await?;
        Ok(locked.into_iter().map(|l| (l.key, l.next_at)).collect())
    }

    /// At trigger, for `on_limit: skip | cancel_oldest`: locks the run
    /// limits (claims and triggers of the workflow take turns) and returns
    /// the runs not final that hold a slot of a full limit, oldest first
    /// (empty: the new run fits).
    pub(crate) async fn full_run_slots(&mut self, gate: &RunGate) -> Result<Vec<Uuid>, Error> {
        let mut locks = gate.locks();
        locks.sort();
        self.lock_limits(&locks).await?;
        let mut c = self.conn();
        if let Some(max) = gate.max_runs {
            let sql = Sql::new(ACTIVE_RUNS).bind(gate.workflow.as_str()).bind(max);
            let active: Vec<IdRow> = c.fetch_all(sql).await?;
            if active.len() as i64 >= max {
                return Ok(active.into_iter().map(|r| r.id).collect());
            }
        }
        if let Some((key, limit)) = &gate.key {
            let sql = Sql::new(ACTIVE_RUNS_KEYED)
                .bind(gate.workflow.as_str())
                .bind(*limit)
                .bind(key.as_str());
            let active: Vec<IdRow> = c.fetch_all(sql).await?;
            if active.len() as i64 >= *limit {
                return Ok(active.into_iter().map(|r| r.id).collect());
            }
        }
        Ok(Vec::new())
    }

    /// Stores a new run's `concurrency.key`, rendered.
    pub(crate) async fn set_run_key(&mut self, run_id: Uuid, key: &str) -> Result<(), Error> {
        self.conn()
            .execute(Sql::new(SET_RUN_KEY).bind(run_id).bind(key))
            .await?;
        Ok(())
    }

    /// Runs with ready instances waiting on a limit that one of these
    /// (just finished) instances was under: advance them, a slot is free.
    pub(crate) async fn waiting_runs(&mut self, finished: &[Uuid]) -> Result<Vec<Uuid>, Error> {
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(WAITING_RUNS_HEAD);
        sql.push_list(finished.iter().copied());
        sql.push(WAITING_RUNS_MID);
        sql.push_list(finished.iter().copied());
        sql.push(WAITING_RUNS_TAIL);
        let rows: Vec<IdRow> = self.conn().fetch_all(sql).await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Makes the waiting `runs` due now for the sweeper (see
    /// [`WAKE_RUNS_HEAD`]), and wakes the hosts listening.
    pub(crate) async fn wake_runs(
        &mut self,
        runs: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        if runs.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new(WAKE_RUNS_HEAD).bind(now);
        sql.push_list(runs.iter().copied());
        sql.push(")");
        self.conn().execute(sql).await?;
        self.notify_wake();
        Ok(())
    }

    /// The oldest runs waiting for the slot that the final run `freed` held
    /// under its run key.
    pub(crate) async fn queued_runs_keyed(
        &mut self,
        freed: Uuid,
        n: i64,
    ) -> Result<Vec<Uuid>, Error> {
        let rows: Vec<IdRow> = self
            .conn()
            .fetch_all(Sql::new(QUEUED_RUNS_KEYED).bind(freed).bind(n))
            .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// The oldest runs of the workflow waiting for a run slot.
    pub(crate) async fn queued_runs(&mut self, workflow: &str, n: i64) -> Result<Vec<Uuid>, Error> {
        let rows: Vec<IdRow> = self
            .conn()
            .fetch_all(Sql::new(QUEUED_RUNS).bind(workflow).bind(n))
            .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }
}

fn push_list_or_null(sql: &mut Sql, items: &[String]) {
    if items.is_empty() {
        sql.push("NULL");
    } else {
        sql.push_list(items.iter().map(String::as_str));
    }
}
