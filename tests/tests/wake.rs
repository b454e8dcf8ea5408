//! Early wake-ups on AWS: after a failure whose retry backoff (3 s) ends
//! before the next minute sweep, the handlers create one EventBridge
//! Scheduler one-time schedule that invokes `advance` at that time — through
//! the real aws-sdk-scheduler client against moto. Racing handlers that
//! compute the same due time create it once.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_scheduler::types::ActionAfterCompletion;
use ork_api::waker::{schedule_name, Waker};
use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Executors};
use ork_core::spec::ExecutorKind;
use ork_tests::app::TestApp;
use ork_tests::db;
use serde_json::json;

const ADVANCE_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:ork-advance";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/ork-scheduler";

/// Starts attempts and keeps their tokens, so the test reports as a worker.
#[derive(Default)]
struct Holding(Mutex<Vec<DispatchRequest>>);

#[async_trait]
impl Executor for Holding {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        self.0.lock().unwrap().push(req.clone());
        Ok(Dispatch::Started {
            execution_id: format!("held-{}", req.attempt.task_id),
        })
    }
}

async fn scheduler() -> aws_sdk_scheduler::Client {
    ork_tests::moto::harness_async().await;
    let moto = &ork_tests::moto::harness().moto;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto)
        .load()
        .await;
    aws_sdk_scheduler::Client::new(&config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_due_before_the_minute_sweep_schedules_one_early_advance() {
    let client = scheduler().await;
    let group = format!("ork-test-{}", uuid::Uuid::now_v7().simple());
    client
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .expect("CreateScheduleGroup");
    let waker = Waker::Scheduler {
        client: client.clone(),
        target_arn: ADVANCE_ARN.into(),
        role_arn: ROLE_ARN.into(),
        group: group.clone(),
    };

    let db = db::sqlite().await;
    let holding = Arc::new(Holding::default());
    let app = TestApp::builder(db.store.clone())
        .executors(Executors::new().with(ExecutorKind::Noop, holding.clone()))
        .waker(waker.clone())
        .spawn()
        .await;
    let spec = ork_tests::db::parse(
        "name: flaky\ntasks:\n  only: {executor: noop, retries: {count: 2, backoff: 3s}}\n",
    );
    app.engine.apply(&spec, None).await.unwrap();
    let (status, body) = app.post("/trigger", &json!({"workflow": "flaky"})).await;
    assert_eq!(status, 202, "{body}");
    let req = holding.0.lock().unwrap().pop().expect("dispatched");
    let token = req.callback.expect("a callback").token;

    let failed_at = chrono::Utc::now();
    let (status, body) = app
        .post(
            "/complete",
            &json!({"token": token, "status": "failed", "exit_code": 1, "error": "flaky"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let listed = client
        .list_schedules()
        .group_name(&group)
        .send()
        .await
        .expect("ListSchedules");
    let names: Vec<&str> = listed.schedules().iter().filter_map(|s| s.name()).collect();
    assert_eq!(names.len(), 1, "one early advance: {names:?}");
    let schedule = client
        .get_schedule()
        .group_name(&group)
        .name(names[0])
        .send()
        .await
        .expect("GetSchedule");
    let expression = schedule.schedule_expression().unwrap();
    let at = chrono::NaiveDateTime::parse_from_str(
        expression.trim_start_matches("at(").trim_end_matches(')'),
        "%Y-%m-%dT%H:%M:%S",
    )
    .expect("an at() expression")
    .and_utc();
    let after_failure = (at - failed_at).num_milliseconds();
    assert!(
        (2_000..=5_000).contains(&after_failure),
        "wakes when the 3 s backoff ends, not at the minute: {expression}, {after_failure} ms after the failure"
    );
    assert_eq!(
        schedule.action_after_completion(),
        Some(&ActionAfterCompletion::Delete)
    );
    let target = schedule.target().expect("a target");
    assert_eq!(target.arn(), ADVANCE_ARN);
    assert_eq!(target.role_arn(), ROLE_ARN);

    // Another handler computing the same due time creates no second one.
    assert_eq!(
        waker
            .wake_at(
                at - chrono::TimeDelta::seconds(1),
                at - chrono::TimeDelta::seconds(2)
            )
            .await,
        None
    );
    assert_eq!(names[0], schedule_name(at));
    // A due time past the next minute sweep is left to it.
    let now = chrono::Utc::now();
    assert_eq!(
        waker
            .wake_at(now + chrono::TimeDelta::minutes(5), now)
            .await,
        None
    );
    let listed = client
        .list_schedules()
        .group_name(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.schedules().len(), 1);
}
