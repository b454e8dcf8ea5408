//! ECS task-state-change events and stopped-task outcomes: plain JSON, no
//! AWS SDK, so that `on-task-complete` can read an EventBridge event in any
//! build. The Fargate executor judges `DescribeTasks` answers with the same
//! [`Stopped`] rules.

use ork_core::executor::Outcome;
use serde::Deserialize;

/// The reason given to ECS when Ork stops a task.
pub const STOP_REASON: &str = "cancelled by ork";

/// The worker variable that identifies Ork's container in a task's overrides.
pub(crate) const MARKER_VAR: &str = "ORK_RUN_ID";
pub(crate) const TOKEN_VAR: &str = "ORK_CALLBACK_TOKEN";

/// The cluster named in a long-format task ARN
/// (`arn:aws:ecs:region:account:task/cluster/id`); `None` for the old
/// short format, which means the account's `default` cluster.
pub fn cluster_of_task_arn(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let mut parts = resource.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("task"), Some(cluster), Some(_id), None) if !cluster.is_empty() => Some(cluster),
        _ => None,
    }
}

/// A stopped ECS task, as an EventBridge "ECS Task State Change" event
/// reports it to the on-task-complete handler.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsStopped {
    pub task_arn: String,
    /// The `ORK_CALLBACK_TOKEN` the task was started with, read from its
    /// container override; the caller verifies it.
    pub token: Option<String>,
    pub outcome: Outcome,
}

/// Reads an EventBridge "ECS Task State Change" event: `Some` for a task
/// that reached `STOPPED`, `None` for any other state, source or shape.
///
/// The container judged is the one whose override carries the worker
/// environment; its exit code decides success (0) or failure.
pub fn parse_task_state_change(event: &serde_json::Value) -> Option<EcsStopped> {
    let event = Event::deserialize(event).ok()?;
    if event.source.as_deref() != Some("aws.ecs")
        || event.detail_type.as_deref() != Some("ECS Task State Change")
    {
        return None;
    }
    let detail = event.detail?;
    if detail.last_status.as_deref() != Some("STOPPED") {
        return None;
    }
    let task_arn = detail.task_arn.filter(|a| !a.is_empty())?;
    let ours = detail.overrides.and_then(|o| {
        o.container_overrides.into_iter().find(|c| {
            c.environment
                .iter()
                .any(|kv| kv.name == MARKER_VAR || kv.name == TOKEN_VAR)
        })
    });
    let token = ours.as_ref().and_then(|c| {
        c.environment
            .iter()
            .find(|kv| kv.name == TOKEN_VAR)
            .map(|kv| kv.value.clone())
    });
    let stopped = Stopped {
        containers: detail
            .containers
            .into_iter()
            .map(|c| ContainerEnd {
                name: c.name,
                exit_code: c.exit_code,
                reason: c.reason,
            })
            .collect(),
        ork_container: ours.map(|c| c.name),
        stopped_reason: detail.stopped_reason,
    };
    Some(EcsStopped {
        task_arn,
        token,
        outcome: stopped.outcome(),
    })
}

#[derive(Deserialize)]
struct Event {
    source: Option<String>,
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    detail: Option<EventDetail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventDetail {
    last_status: Option<String>,
    task_arn: Option<String>,
    #[serde(default)]
    containers: Vec<EventContainer>,
    stopped_reason: Option<String>,
    overrides: Option<EventOverrides>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventContainer {
    #[serde(default)]
    name: String,
    exit_code: Option<i64>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventOverrides {
    #[serde(default)]
    container_overrides: Vec<EventContainerOverride>,
}

#[derive(Deserialize)]
struct EventContainerOverride {
    #[serde(default)]
    name: String,
    #[serde(default)]
    environment: Vec<EventVar>,
}

#[derive(Deserialize)]
struct EventVar {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

/// A stopped task, from `DescribeTasks` or from an event.
pub(crate) struct Stopped {
    pub(crate) containers: Vec<ContainerEnd>,
    /// The container Ork overrode, when the overrides say.
    pub(crate) ork_container: Option<String>,
    pub(crate) stopped_reason: Option<String>,
}

pub(crate) struct ContainerEnd {
    pub(crate) name: String,
    pub(crate) exit_code: Option<i64>,
    pub(crate) reason: Option<String>,
}

impl Stopped {
    /// Success iff Ork's container exited with 0. Without overrides to
    /// name it, every container that reported must have exited with 0.
    pub(crate) fn outcome(&self) -> Outcome {
        let ours = self
            .ork_container
            .as_deref()
            .and_then(|name| self.containers.iter().find(|c| c.name == name));
        let judged: Vec<&ContainerEnd> = match ours {
            Some(c) => vec![c],
            None => self.containers.iter().collect(),
        };
        let failed = judged.iter().find(|c| c.exit_code != Some(0));
        match (judged.is_empty(), failed) {
            (false, None) => Outcome::success(None),
            (true, _) => Outcome::failure(
                None,
                self.explain(
                    "the task stopped without reporting a container".into(),
                    None,
                ),
            ),
            (false, Some(c)) => match c.exit_code {
                Some(code) => Outcome::failure(
                    Some(code),
                    self.explain(
                        format!("container {:?} exited with code {code}", c.name),
                        c.reason.as_deref(),
                    ),
                ),
                None => Outcome::failure(
                    None,
                    self.explain(
                        format!("container {:?} stopped without an exit code", c.name),
                        c.reason.as_deref(),
                    ),
                ),
            },
        }
    }

    /// `what`, then the container's and the task's reasons when known.
    fn explain(&self, what: String, container_reason: Option<&str>) -> String {
        let reasons: Vec<&str> = [container_reason, self.stopped_reason.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .collect();
        if reasons.is_empty() {
            what
        } else {
            format!("{what}: {}", reasons.join("; "))
        }
    }
}
