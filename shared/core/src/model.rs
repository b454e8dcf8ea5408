//! The records Ork keeps: runs, task instances and their events, as read
//! back from the store.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! status_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> { s.parse() }
        }
    };
}

status_enum! {
    /// Lifecycle of a run. `Success`, `Failed` and `Cancelled` are final.
    RunStatus {
        Pending => "pending",
        Running => "running",
        Success => "success",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

status_enum! {
    /// Lifecycle of one task instance.
    ///
    /// `pending` → `dispatched` (claimed by one handler, under a lease) →
    /// `running` (the executor accepted it) → `success` | `failed`. A failed
    /// attempt with retries left goes back to `pending` with a later
    /// `not_before`. `skipped` marks descendants of a task that failed for good.
    TaskStatus {
        Pending => "pending",
        Dispatched => "dispatched",
        Running => "running",
        Success => "success",
        Failed => "failed",
        Skipped => "skipped",
        Cancelled => "cancelled",
    }
}

impl RunStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Success | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl TaskStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Success | TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled
        )
    }
}

/// A stored version of a workflow.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowVersion {
    pub name: String,
    pub version: i64,
    pub hash: String,
    pub description: Option<String>,
    pub task_count: usize,
    pub created_at: DateTime<Utc>,
}

/// One execution of one workflow version.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Run {
    pub id: Uuid,
    pub workflow: String,
    pub version: i64,
    #[sqlx(try_from = "String")]
    pub status: RunStatus,
    #[sqlx(json)]
    pub params: serde_json::Value,
    pub trigger: String,
    pub idempotency_key: Option<String>,
    pub tasks_total: i64,
    pub tasks_open: i64,
    pub tasks_failed: i64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What the run cost in USD (`crate::cost`), stored when it was
    /// finalized; `None` while it is open.
    pub cost_usd: Option<f64>,
}

/// One instance of a task in a run (a fanned-out task has `task_count` of them).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Task {
    pub id: Uuid,
    pub run_id: Uuid,
    pub name: String,
    pub task_index: i64,
    pub task_count: i64,
    pub executor: String,
    #[sqlx(try_from = "String")]
    pub status: TaskStatus,
    pub attempt: i64,
    pub max_attempts: i64,
    pub deps_remaining: i64,
    pub execution_id: Option<String>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    #[sqlx(json(nullable))]
    pub output: Option<serde_json::Value>,
    pub ready_at: Option<DateTime<Utc>>,
    pub not_before: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Task {
    /// The attempt this row is on, given its run's workflow version.
    pub fn attempt_ref(&self, workflow: &str, version: i64) -> AttemptRef {
        AttemptRef {
            run_id: self.run_id,
            workflow: workflow.to_owned(),
            version,
            task_id: self.id,
            name: self.name.clone(),
            task_index: self.task_index,
            attempt: self.attempt,
        }
    }

    /// `name` for single tasks, `name[i]` for fanned-out instances.
    pub fn label(&self) -> String {
        if self.task_count > 1 {
            format!("{}[{}]", self.name, self.task_index)
        } else {
            self.name.clone()
        }
    }
}

/// A task attempt under way, with its run's workflow version: what the
/// sweeper checks.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InFlight {
    #[sqlx(flatten)]
    pub task: Task,
    pub workflow: String,
    pub version: i64,
}

impl InFlight {
    pub fn attempt_ref(&self) -> AttemptRef {
        self.task.attempt_ref(&self.workflow, self.version)
    }
}

/// One line of the append-only audit log: a run or task entered `status`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Event {
    pub id: i64,
    pub run_id: Uuid,
    pub task_id: Option<Uuid>,
    pub attempt: Option<i64>,
    pub status: String,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// The identity of one attempt of one task instance: what a completion,
/// a callback token or a log file refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttemptRef {
    pub run_id: Uuid,
    pub workflow: String,
    pub version: i64,
    pub task_id: Uuid,
    pub name: String,
    pub task_index: i64,
    pub attempt: i64,
}
