//! Runs attempts as AWS ECS tasks on Fargate.
//!
//! An attempt is one `RunTask` of the task's `fargate:` target, with the
//! worker environment and the task's command put in the container override.
//! Its end comes back either as an EventBridge "ECS Task State Change" event
//! (see [`parse_task_state_change`]) or, when no event or callback came, by
//! [`Executor::poll`] (`DescribeTasks`).
//!
//! Dispatching the same attempt twice starts one task: the task carries a
//! `startedBy` derived from the attempt, a dispatch first looks for a task
//! with it, and `RunTask` gets a `clientToken` derived from the attempt too.

use crate::aws::sdk_error;
use crate::ecs_event::{cluster_of_task_arn, ContainerEnd, Stopped, MARKER_VAR, STOP_REASON};
use async_trait::async_trait;
use aws_sdk_ecs::operation::run_task::RunTaskOutput;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, DesiredStatus, KeyValuePair,
    LaunchType, NetworkConfiguration, TaskOverride,
};
use aws_sdk_ecs::Client;

use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::AttemptRef;
use ork_core::spec::FargateTarget;

/// ECS's limit on `startedBy`.
const STARTED_BY_MAX: usize = 36;
/// ECS's limit on `clientToken`.
const CLIENT_TOKEN_MAX: usize = 64;

/// Starts attempts with ECS `RunTask` (launch type `FARGATE`), stops them
/// with `StopTask` and reads their end with `DescribeTasks`. The execution
/// id is the task ARN.
#[derive(Clone, Debug)]
pub struct FargateExecutor {
    client: Client,
}

impl FargateExecutor {
    pub fn new(client: Client) -> Self {
        FargateExecutor { client }
    }

    /// A client configured by the standard AWS chain: region, credentials
    /// and endpoint (`AWS_ENDPOINT_URL`) from the environment, profile or
    /// instance role. Credentials are looked up at the first call; when the
    /// chain finds none, that call fails with [`ExecutorError::NotConfigured`].
    pub async fn from_env() -> Result<Self, ExecutorError> {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        if config.credentials_provider().is_none() {
            return Err(ExecutorError::not_configured(
                "no AWS credentials provider for the Fargate executor",
            ));
        }
        Ok(Self::new(Client::new(&config)))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The task ARN of an earlier dispatch of the same attempt, if ECS
    /// still lists one (stopped tasks stay listed for about an hour).
    async fn find_started(
        &self,
        cluster: &str,
        started_by: &str,
    ) -> Result<Option<String>, ExecutorError> {
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let out = self
                .client
                .list_tasks()
                .cluster(cluster)
                .started_by(started_by)
                .desired_status(status)
                .send()
                .await
                .map_err(|e| {
                    sdk_error(&format!("ECS ListTasks on cluster {cluster:?} failed"), e)
                })?;
            if let Some(arn) = out.task_arns().first() {
                return Ok(Some(arn.clone()));
            }
        }
        Ok(None)
    }
}

/// The `startedBy` of an attempt's task: the task instance id and the
/// attempt number, at most 36 characters. Leading digits of the id give
/// way to an attempt number of four digits or more.
pub fn started_by(attempt: &AttemptRef) -> String {
    let suffix = format!("-{}", attempt.attempt);
    let id = attempt.task_id.simple().to_string();
    let keep = STARTED_BY_MAX.saturating_sub(suffix.len()).min(id.len());
    format!("{}{suffix}", &id[id.len() - keep..])
}

/// The `RunTask` client token of an attempt, at most 64 characters.
pub fn client_token(attempt: &AttemptRef) -> String {
    let mut token = format!("ork-{}-{}", attempt.task_id, attempt.attempt);
    token.truncate(CLIENT_TOKEN_MAX);
    token
}

/// The container and task overrides of a dispatch: the command (`command`
/// then `args`, or `args` alone), the worker environment followed by the
/// task's `env` (the worker's variables win a name clash), CPU and memory.
pub fn task_override(req: &DispatchRequest, target: &FargateTarget) -> TaskOverride {
    let env = req
        .container_env()
        .into_iter()
        .map(|(name, value)| KeyValuePair::builder().name(name).value(value).build())
        .collect::<Vec<_>>();

    let argv = req.spec.argv();
    let command: Option<Vec<String>> = (!argv.is_empty()).then_some(argv);

    let container = ContainerOverride::builder()
        .name(&target.container)
        .set_command(command)
        .set_environment(Some(env))
        .build();
    TaskOverride::builder()
        .container_overrides(container)
        .set_cpu(target.cpu.map(|c| c.to_string()))
        .set_memory(target.memory.map(|m| m.to_string()))
        .build()
}

/// The task ARN `RunTask` started, or its failures as an error. These are
/// capacity and placement failures (`RESOURCE:MEMORY`, `AGENT`…), which
/// may not recur: transient.
fn started_arn(out: &RunTaskOutput, cluster: &str) -> Result<String, ExecutorError> {
    if let Some(arn) = out.tasks().iter().find_map(|t| t.task_arn()) {
        return Ok(arn.to_owned());
    }
    let failures: Vec<String> = out
        .failures()
        .iter()
        .map(|f| {
            let mut text = f.reason().unwrap_or("unknown reason").to_owned();
            if let Some(detail) = f.detail().filter(|d| !d.is_empty()) {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(arn) = f.arn().filter(|a| !a.is_empty()) {
                text.push_str(&format!(" [{arn}]"));
            }
            text
        })
        .collect();
    Err(ExecutorError::Transient(if failures.is_empty() {
        format!("ECS RunTask on cluster {cluster:?} started no task and reported no failure")
    } else {
        format!(
            "ECS could not start the task on cluster {cluster:?}: {}",
            failures.join("; ")
        )
    }))
}

#[async_trait]
impl Executor for FargateExecutor {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let target =
            req.spec.fargate.as_ref().ok_or_else(|| {
                ExecutorError::permanent("fargate task without a `fargate:` block")
            })?;
        let started_by = started_by(&req.attempt);
        if let Some(arn) = self.find_started(&target.cluster, &started_by).await? {
            return Ok(Dispatch::Started { execution_id: arn });
        }

        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(target.subnets.clone()))
            // Left out when empty: ECS then uses the VPC's default group.
            .set_security_groups(
                (!target.security_groups.is_empty()).then(|| target.security_groups.clone()),
            )
            .assign_public_ip(if target.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| ExecutorError::permanent(format!("invalid network configuration: {e}")))?;
        let out = self
            .client
            .run_task()
            .cluster(&target.cluster)
            .task_definition(&target.task_definition)
            .launch_type(LaunchType::Fargate)
            .count(1)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .overrides(task_override(req, target))
            .started_by(&started_by)
            .client_token(client_token(&req.attempt))
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    &format!(
                        "ECS RunTask of {:?} on cluster {:?} failed",
                        target.task_definition, target.cluster
                    ),
                    e,
                )
            })?;
        let execution_id = started_arn(&out, &target.cluster)?;
        Ok(Dispatch::Started { execution_id })
    }

    async fn cancel(&self, _attempt: &AttemptRef, execution_id: &str) -> Result<(), ExecutorError> {
        self.client
            .stop_task()
            .set_cluster(cluster_of_task_arn(execution_id).map(str::to_owned))
            .task(execution_id)
            .reason(STOP_REASON)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("ECS StopTask of {execution_id} failed"), e))?;
        Ok(())
    }

    async fn poll(
        &self,
        _attempt: &AttemptRef,
        execution_id: &str,
    ) -> Result<Option<Outcome>, ExecutorError> {
        let out = self
            .client
            .describe_tasks()
            .set_cluster(cluster_of_task_arn(execution_id).map(str::to_owned))
            .tasks(execution_id)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("ECS DescribeTasks of {execution_id} failed"), e))?;
        let Some(task) = out
            .tasks()
            .iter()
            .find(|t| t.task_arn() == Some(execution_id))
            .or_else(|| out.tasks().first())
        else {
            let reason = out
                .failures()
                .iter()
                .filter_map(|f| f.reason())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ExecutorError::Permanent(if reason.is_empty() {
                format!("ECS does not know task {execution_id}")
            } else {
                format!("ECS does not know task {execution_id}: {reason}")
            }));
        };
        if task.last_status() != Some("STOPPED") {
            return Ok(None);
        }
        let stopped = Stopped {
            containers: task
                .containers()
                .iter()
                .map(|c| ContainerEnd {
                    name: c.name().unwrap_or_default().to_owned(),
                    exit_code: c.exit_code().map(i64::from),
                    reason: c.reason().map(str::to_owned),
                })
                .collect(),
            ork_container: task.overrides().and_then(|o| {
                o.container_overrides()
                    .iter()
                    .find(|c| {
                        c.environment()
                            .iter()
                            .any(|kv| kv.name() == Some(MARKER_VAR))
                    })
                    .and_then(|c| c.name().map(str::to_owned))
            }),
            stopped_reason: task.stopped_reason().map(str::to_owned),
        };
        Ok(Some(stopped.outcome()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs_event::*;
    use aws_sdk_ecs::types::{Failure, Task};
    use serde_json::json;
    use uuid::Uuid;

    fn attempt(attempt: i64) -> AttemptRef {
        AttemptRef {
            run_id: Uuid::now_v7(),
            workflow: "etl".into(),
            version: 1,
            task_id: Uuid::parse_str("0190f0a2-7b3c-7d4e-8f00-112233445566").unwrap(),
            name: "load".into(),
            task_index: 0,
            attempt,
        }
    }

    /// A stopped task as EventBridge delivers it, after the shape in the
    /// Amazon ECS developer guide ("Amazon ECS task state change events").
    fn stopped_event(
        exit_code: serde_json::Value,
        container_reason: Option<&str>,
    ) -> serde_json::Value {
        let mut app = json!({
            "containerArn": "arn:aws:ecs:us-west-2:111122223333:container/my-cluster/1234567890abcdef0/3f2b2a9d-4f2a-4b5e-9f4c-0c2e4a1b9d7e",
            "lastStatus": "STOPPED",
            "name": "app",
            "image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/etl:latest",
            "taskArn": "arn:aws:ecs:us-west-2:111122223333:task/my-cluster/1234567890abcdef0",
            "networkInterfaces": [{"attachmentId": "1789bcae-ddfb-4d10-8ebe-8ac87ddba5b8", "privateIpv4Address": "10.0.1.23"}],
            "cpu": "0"
        });
        if !exit_code.is_null() {
            app["exitCode"] = exit_code;
        }
        if let Some(r) = container_reason {
            app["reason"] = json!(r);
        }
        json!({
            "version": "0",
            "id": "3317b2af-7005-947d-b652-f55e762e571a",
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": "111122223333",
            "time": "2024-05-21T20:45:57Z",
            "region": "us-west-2",
            "resources": ["arn:aws:ecs:us-west-2:111122223333:task/my-cluster/1234567890abcdef0"],
            "detail": {
                "attachments": [{
                    "id": "1789bcae-ddfb-4d10-8ebe-8ac87ddba5b8",
                    "type": "eni",
                    "status": "DELETED",
                    "details": [
                        {"name": "subnetId", "value": "subnet-abcd1234"},
                        {"name": "networkInterfaceId", "value": "eni-abcd1234"}
                    ]
                }],
                "availabilityZone": "us-west-2a",
                "clusterArn": "arn:aws:ecs:us-west-2:111122223333:cluster/my-cluster",
                "containers": [
                    app,
                    {
                        "containerArn": "arn:aws:ecs:us-west-2:111122223333:container/my-cluster/1234567890abcdef0/aa11bb22-0000-4000-8000-123456789abc",
                        "exitCode": 0,
                        "lastStatus": "STOPPED",
                        "name": "log-router",
                        "taskArn": "arn:aws:ecs:us-west-2:111122223333:task/my-cluster/1234567890abcdef0"
                    }
                ],
                "cpu": "256",
                "createdAt": "2024-05-21T20:43:12.214Z",
                "desiredStatus": "STOPPED",
                "launchType": "FARGATE",
                "lastStatus": "STOPPED",
                "memory": "512",
                "overrides": {
                    "containerOverrides": [{
                        "name": "app",
                        "command": ["python", "load.py"],
                        "environment": [
                            {"name": "ORK_RUN_ID", "value": "0190f0a2-0000-7000-8000-000000000001"},
                            {"name": "ORK_TASK_INDEX", "value": "0"},
                            {"name": "ORK_CALLBACK_URL", "value": "https://ork.example.com/complete"},
                            {"name": "ORK_CALLBACK_TOKEN", "value": "eyJydW4iOiJ4In0.c2ln"}
                        ]
                    }],
                    "cpu": "256",
                    "memory": "512"
                },
                "platformVersion": "1.4.0",
                "startedBy": "0190f0a27b3c7d4e8f00112233445566-1",
                "stopCode": "EssentialContainerExited",
                "stoppedAt": "2024-05-21T20:45:57.111Z",
                "stoppedReason": "Essential container in task exited",
                "stoppingAt": "2024-05-21T20:45:40.902Z",
                "taskArn": "arn:aws:ecs:us-west-2:111122223333:task/my-cluster/1234567890abcdef0",
                "taskDefinitionArn": "arn:aws:ecs:us-west-2:111122223333:task-definition/etl:3",
                "updatedAt": "2024-05-21T20:45:57.111Z",
                "version": 5
            }
        })
    }

    #[test]
    fn a_stopped_event_with_exit_code_zero_is_a_success() {
        let got = parse_task_state_change(&stopped_event(json!(0), None)).unwrap();
        assert_eq!(
            got,
            EcsStopped {
                task_arn: "arn:aws:ecs:us-west-2:111122223333:task/my-cluster/1234567890abcdef0"
                    .into(),
                token: Some("eyJydW4iOiJ4In0.c2ln".into()),
                outcome: Outcome::success(None),
            }
        );
    }

    #[test]
    fn a_non_zero_exit_code_of_the_overridden_container_is_a_failure() {
        let got = parse_task_state_change(&stopped_event(json!(3), None)).unwrap();
        assert!(!got.outcome.success);
        assert_eq!(got.outcome.exit_code, Some(3));
        assert_eq!(
            got.outcome.error.as_deref(),
            Some("container \"app\" exited with code 3: Essential container in task exited")
        );
        assert_eq!(got.token.as_deref(), Some("eyJydW4iOiJ4In0.c2ln"));
    }

    #[test]
    fn a_container_that_never_ran_fails_with_its_reason() {
        let mut event = stopped_event(
            serde_json::Value::Null,
            Some("CannotPullContainerError: pull image manifest has been retried 5 time(s)"),
        );
        event["detail"]["stoppedReason"] = json!("Task failed to start");
        event["detail"]["stopCode"] = json!("TaskFailedToStart");
        let got = parse_task_state_change(&event).unwrap();
        assert_eq!(
            got.outcome,
            Outcome::failure(
                None,
                "container \"app\" stopped without an exit code: CannotPullContainerError: pull \
                 image manifest has been retried 5 time(s); Task failed to start"
            )
        );
    }

    #[test]
    fn without_overrides_every_container_must_exit_zero() {
        let mut event = stopped_event(json!(0), None);
        event["detail"].as_object_mut().unwrap().remove("overrides");
        let got = parse_task_state_change(&event).unwrap();
        assert_eq!(got.token, None);
        assert!(got.outcome.success);

        event["detail"]["containers"][1]["exitCode"] = json!(137);
        let got = parse_task_state_change(&event).unwrap();
        assert_eq!(got.outcome.exit_code, Some(137));
        assert!(got.outcome.error.unwrap().contains("\"log-router\""));
    }

    #[test]
    fn events_that_are_not_a_stop_are_ignored() {
        let mut running = stopped_event(json!(0), None);
        running["detail"]["lastStatus"] = json!("RUNNING");
        assert_eq!(parse_task_state_change(&running), None);

        let mut other = stopped_event(json!(0), None);
        other["detail-type"] = json!("ECS Container Instance State Change");
        assert_eq!(parse_task_state_change(&other), None);

        let mut other = stopped_event(json!(0), None);
        other["source"] = json!("aws.batch");
        assert_eq!(parse_task_state_change(&other), None);

        assert_eq!(parse_task_state_change(&json!({"hello": "world"})), None);
        assert_eq!(parse_task_state_change(&json!([1, 2])), None);
    }

    #[test]
    fn started_by_and_client_token_fit_ecs_limits() {
        let a = attempt(1);
        assert_eq!(started_by(&a), "0190f0a27b3c7d4e8f00112233445566-1");
        assert_eq!(
            client_token(&a),
            "ork-0190f0a2-7b3c-7d4e-8f00-112233445566-1"
        );
        let big = attempt(123_456);
        assert_eq!(started_by(&big), "0f0a27b3c7d4e8f00112233445566-123456");
        for n in [0, 9, 999, 1000, i64::MAX, i64::MIN] {
            assert!(started_by(&attempt(n)).len() <= 36, "{n}");
            assert!(client_token(&attempt(n)).len() <= 64, "{n}");
        }
        assert_ne!(started_by(&attempt(1)), started_by(&attempt(2)));
    }

    #[test]
    fn the_cluster_is_read_from_long_task_arns() {
        assert_eq!(
            cluster_of_task_arn(
                "arn:aws:ecs:us-east-1:123456789012:task/etl-prod/0eaecae683014a36"
            ),
            Some("etl-prod")
        );
        assert_eq!(
            cluster_of_task_arn("arn:aws:ecs:us-east-1:123456789012:task/0eaecae683014a36"),
            None
        );
        assert_eq!(cluster_of_task_arn("pid:42"), None);
    }

    #[test]
    fn run_task_failures_become_an_error() {
        let out = RunTaskOutput::builder()
            .failures(
                Failure::builder()
                    .arn("arn:aws:ecs:us-east-1:123456789012:container-instance/x")
                    .reason("RESOURCE:MEMORY")
                    .build(),
            )
            .failures(
                Failure::builder()
                    .reason("AGENT")
                    .detail("agent disconnected")
                    .build(),
            )
            .build();
        assert_eq!(
            started_arn(&out, "etl").unwrap_err().to_string(),
            "ECS could not start the task on cluster \"etl\": RESOURCE:MEMORY \
             [arn:aws:ecs:us-east-1:123456789012:container-instance/x]; AGENT (agent disconnected)"
        );
        let out = RunTaskOutput::builder()
            .tasks(Task::builder().task_arn("arn:t").build())
            .build();
        assert_eq!(started_arn(&out, "etl").unwrap(), "arn:t");
        assert!(started_arn(&RunTaskOutput::builder().build(), "etl")
            .unwrap_err()
            .message()
            .contains("no failure"));
    }
}
