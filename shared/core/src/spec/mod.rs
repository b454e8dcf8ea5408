//! The workflow spec: what a YAML file in `workflows/` says, parsed and validated.
//!
//! Validation happens here, before anything is written to the store: a
//! [`WorkflowSpec`] read by [`parse_str`] has no cycle, no unknown dependency
//! and no task an executor cannot run; one built in code is checked by
//! [`WorkflowSpec::validate`], which `Engine::apply` runs on every spec it
//! stores. Errors name the file and, where the parser
//! knows it, the line.

mod concurrency;
mod load;
mod schedule;
mod types;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use concurrency::{render_key, KeyLimit, OnLimit, RateLimit, RateUse, RunConcurrency};
pub use duration::parse_duration;
pub use load::{load_dir, load_dir_files, load_file, parse_str};
pub use schedule::{parse_bound, Schedule};
pub use types::check_types;

/// A spec that cannot be loaded, with where it went wrong, so the message
/// reads like a compiler's: `workflows/etl.yaml:12: task "load" ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", Location(.file.as_deref(), *.line))]
pub struct SpecError {
    pub file: Option<PathBuf>,
    /// 1-based.
    pub line: Option<usize>,
    pub message: String,
}

impl SpecError {
    pub fn new(message: impl Into<String>) -> SpecError {
        SpecError {
            file: None,
            line: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, line: Option<usize>) -> SpecError {
        self.line = line;
        self
    }

    pub fn in_file(mut self, file: Option<&Path>) -> SpecError {
        self.file = file.map(Path::to_path_buf);
        self
    }
}

/// The `path:line: ` prefix of a [`SpecError`], omitting what is unknown.
struct Location<'a>(Option<&'a Path>, Option<usize>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (self.0, self.1) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display()),
            (Some(file), None) => write!(f, "{}: ", file.display()),
            (None, Some(line)) => write!(f, "line {line}: "),
            (None, None) => Ok(()),
        }
    }
}

/// A validated workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tasks by name. A `BTreeMap` keeps the serialized form (and so the
    /// version hash) independent of the order in the file. A name given
    /// twice is an error rather than silently keeping the last.
    #[serde(deserialize_with = "validate::unique_tasks")]
    pub tasks: BTreeMap<String, TaskSpec>,
    /// Directory the file was loaded from; relative `file:` paths resolve against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_dir: Option<PathBuf>,
    /// Cron expression (5 fields) on which runs start by themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Fire every slot missed since the last one fired, not only the latest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catchup: bool,
    /// The run params the workflow declares, with their defaults (`null`:
    /// none). A trigger fills in the defaults of those it does not give;
    /// the type check counts them as provided (docs/type_schemas.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// How many runs may be in flight at once (docs/concurrency.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<RunConcurrency>,
    /// Named rate limits the tasks draw from, shared by every workflow
    /// naming the same limit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rate_limits: BTreeMap<String, RateLimit>,
}

impl WorkflowSpec {
    /// Checks the rules [`parse_str`] checks, and the types along the edges
    /// ([`check_types`]), for a spec built in code (errors carry no line:
    /// there is no source). [`crate::engine::Engine::apply`]
    /// runs it, so no path stores a workflow that was not validated.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate::validate(self, "")?;
        // Schemas stored inline are checked along the edges here too, so
        // no path stores a version whose edges do not fit.
        types::check_types(self, "")
    }

    /// How many task instances a run of this workflow has: the sum of its
    /// tasks' `task_count`.
    pub fn instances(&self) -> u64 {
        self.tasks
            .values()
            .filter(|t| t.foreach.is_none())
            .map(|t| u64::from(t.task_count))
            .sum()
    }

    /// `params` with the declared defaults added where absent.
    pub fn with_param_defaults(&self, mut params: serde_json::Value) -> serde_json::Value {
        if let Some(map) = params.as_object_mut() {
            for (k, v) in self.params.iter().filter(|(_, v)| !v.is_null()) {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        params
    }

    /// The parsed schedule, if the workflow has one (validated at load).
    pub fn parsed_schedule(&self) -> Option<Result<Schedule, String>> {
        let expr = self.schedule.as_deref()?;
        Some(Schedule::parse(
            expr,
            self.timezone.as_deref(),
            self.catchup,
        ))
    }
}

/// One node of the DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    #[serde(default)]
    pub executor: ExecutorKind,
    /// Program to run (`process`), resolved on `PATH`: a program name
    /// (`command: python3`, with `args`) or the whole argv as a list
    /// (`command: ["sh", "-c", "echo hi"]`; `args`, if also given, are
    /// appended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Script run with `python3` (`python`), relative to the workflow file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Wall-clock limit of one attempt.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "RetryPolicy::is_none")]
    pub retries: RetryPolicy,
    /// Exit codes that mean retrying cannot help (bad input, a usage
    /// error): an attempt ending with one fails at once, retries left or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_retryable_exit_codes: Vec<i64>,
    /// Static fan-out: the task runs as this many indexed instances, each
    /// told its `ORK_TASK_INDEX` and `ORK_TASK_COUNT`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub task_count: u32,
    /// Dynamic fan-out: `parent` or `parent.path.in.its.output`, a JSON
    /// array in the output of a direct parent; one instance per item is
    /// created when that parent succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreach: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudrun: Option<CloudRunTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fargate: Option<FargateTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureTarget>,
    /// Explicit input fields: field name → `parent.path`, `params.name` or
    /// `item.path`, taking precedence over the by-name rule. The input
    /// document carries the mapping; the SDKs resolve it (docs/tasks.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// The task's input and output JSON Schemas, or where to get them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<TaskSchema>,
    /// At most this many instances of the task in flight, across all runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// At most `limit` attempts in flight per rendered `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<KeyLimit>,
    /// The named rate limit each attempt draws `cost` tokens from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateUse>,
}

/// A task's `schema:`: a JSON file holding `{"input": …, "output": …}`
/// (relative to the workflow file), a command printing that (run in the
/// workflow's directory, e.g. a Rust SDK binary with `--ork-schema`), or
/// the schemas themselves. `ork apply` resolves the first two (and
/// derives one for an SDK `python` task) into `Inline`, which is what a
/// stored version holds and the API returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskSchema {
    File(PathBuf),
    Command {
        command: Vec<String>,
    },
    Inline {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<serde_json::Value>,
    },
}

/// Where an `inputs:` entry takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource<'a> {
    /// A path into a parent's output.
    Upstream(&'a str, Vec<&'a str>),
    /// A run param.
    Param(&'a str),
    /// A path into the foreach item.
    Item(Vec<&'a str>),
}

/// A task's `command`: a program (its arguments in `args`) or a whole argv.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Program(String),
    Argv(Vec<String>),
}

impl Command {
    /// The words of the command, program first.
    pub fn words(&self) -> &[String] {
        match self {
            Command::Program(p) => std::slice::from_ref(p),
            Command::Argv(v) => v,
        }
    }
}

impl From<&str> for Command {
    fn from(s: &str) -> Self {
        Command::Program(s.to_owned())
    }
}

impl From<String> for Command {
    fn from(s: String) -> Self {
        Command::Program(s)
    }
}

impl TaskSpec {
    /// Whether a run has exactly one instance of it (no `task_count`
    /// fan-out, no `foreach`): its children read one output, not a list.
    pub fn single_instance(&self) -> bool {
        self.task_count == 1 && self.foreach.is_none()
    }

    /// An `inputs:` entry read: `params.x`, `item[.path]`, or a
    /// `depends_on` entry (the longest that matches, as for `foreach`)
    /// with an optional path; `None` when it names none of these.
    pub fn input_source<'a>(&'a self, source: &'a str) -> Option<InputSource<'a>> {
        let path =
            |rest: &'a str| -> Vec<&'a str> { rest.split('.').filter(|p| !p.is_empty()).collect() };
        if let Some(name) = source.strip_prefix("params.") {
            return (!name.is_empty() && !name.contains('.')).then_some(InputSource::Param(name));
        }
        if source == "item" || source.starts_with("item.") {
            return Some(InputSource::Item(path(&source[4..])));
        }
        let parent = self
            .depends_on
            .iter()
            .filter(|d| source == d.as_str() || source.starts_with(&format!("{d}.")))
            .max_by_key(|d| d.len())?;
        Some(InputSource::Upstream(parent, path(&source[parent.len()..])))
    }

    /// The full argv: the command's words, then `args`. Empty without a command.
    pub fn argv(&self) -> Vec<String> {
        self.command
            .iter()
            .flat_map(Command::words)
            .chain(&self.args)
            .cloned()
            .collect()
    }

    /// The `foreach` source split into the parent task and the path of
    /// keys into its output (`extract.users` → `("extract", ["users"])`);
    /// `None` when it names no `depends_on` entry.
    pub fn foreach_source(&self) -> Option<(&str, Vec<&str>)> {
        let f = self.foreach.as_deref()?;
        // Task names may contain '.': the parent is the longest
        // `depends_on` entry that `f` is, or starts with followed by '.'.
        let parent = self
            .depends_on
            .iter()
            .filter(|d| f == d.as_str() || f.starts_with(&format!("{d}.")))
            .max_by_key(|d| d.len())?;
        let rest = &f[parent.len()..];
        let path = rest.split('.').filter(|p| !p.is_empty()).collect();
        Some((parent.as_str(), path))
    }
}

impl Default for TaskSpec {
    /// A `process` task with nothing to run yet: one instance, no retries.
    fn default() -> Self {
        TaskSpec {
            executor: ExecutorKind::default(),
            command: None,
            args: Vec::new(),
            file: None,
            env: BTreeMap::new(),
            depends_on: Vec::new(),
            timeout: None,
            retries: RetryPolicy::default(),
            non_retryable_exit_codes: Vec::new(),
            task_count: 1,
            foreach: None,
            cloudrun: None,
            fargate: None,
            kubernetes: None,
            lambda: None,
            azure: None,
            inputs: BTreeMap::new(),
            schema: None,
            max_parallel: None,
            concurrency: None,
            rate_limit: None,
        }
    }
}

fn one() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Which executor runs a task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// A local program (`command` + `args`).
    #[default]
    Process,
    /// A local `python3 <file>`.
    Python,
    /// Completes at once with success; for tests and benchmarks.
    Noop,
    /// Records what would be dispatched and succeeds (`ork run --dry-run`).
    Mock,
    /// A Google Cloud Run Job execution (the `cloudrun:` block).
    Cloudrun,
    /// An AWS ECS task on Fargate (the `fargate:` block).
    Fargate,
    /// A Kubernetes `batch/v1` Job (the `kubernetes:` block).
    Kubernetes,
    /// An asynchronous AWS Lambda invocation (the `lambda:` block).
    Lambda,
    /// An Azure Container Apps Job execution (the `azure:` block).
    Azure,
}

impl ExecutorKind {
    pub const ALL: &'static [ExecutorKind] = &[
        ExecutorKind::Process,
        ExecutorKind::Python,
        ExecutorKind::Noop,
        ExecutorKind::Mock,
        ExecutorKind::Cloudrun,
        ExecutorKind::Fargate,
        ExecutorKind::Kubernetes,
        ExecutorKind::Lambda,
        ExecutorKind::Azure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Process => "process",
            ExecutorKind::Python => "python",
            ExecutorKind::Noop => "noop",
            ExecutorKind::Mock => "mock",
            ExecutorKind::Cloudrun => "cloudrun",
            ExecutorKind::Fargate => "fargate",
            ExecutorKind::Kubernetes => "kubernetes",
            ExecutorKind::Lambda => "lambda",
            ExecutorKind::Azure => "azure",
        }
    }

    /// Whether its tasks run on this machine, where a file path is an
    /// input (`ORK_INPUT_FILE`); the others get a presigned URL.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            ExecutorKind::Process | ExecutorKind::Python | ExecutorKind::Noop | ExecutorKind::Mock
        )
    }

    /// The largest input it takes inline, when lower than the configured
    /// limit: ECS caps a RunTask's overrides (command and environment) at
    /// 8 KiB in all, so a Fargate input over 2 KiB goes by reference (the
    /// rest is for the contract's variables, among them a presigned
    /// `ORK_OUTPUT_URL` of up to 2 KiB with a session token, the command
    /// and the task's `env`).
    pub fn inline_input_cap(self) -> Option<u64> {
        match self {
            ExecutorKind::Fargate => Some(2048),
            _ => None,
        }
    }
}

impl std::str::FromStr for ExecutorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ExecutorKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown executor {s:?}"))
    }
}

/// Where a `cloudrun` task runs: an existing Cloud Run Job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudRunTarget {
    pub job: String,
    pub project: String,
    #[serde(default = "default_region")]
    pub region: String,
}

fn default_region() -> String {
    "us-central1".into()
}

/// Where a `fargate` task runs: a task definition on an ECS cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FargateTarget {
    pub cluster: String,
    /// `family`, `family:revision` or an ARN.
    pub task_definition: String,
    /// The container whose command and environment are overridden.
    pub container: String,
    pub subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub assign_public_ip: bool,
    /// Task-level CPU units (`1024` = 1 vCPU) overriding the definition's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Task-level memory in MiB overriding the definition's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
}

/// Where a `kubernetes` task runs: one `batch/v1` Job per attempt, in the
/// cluster of the ambient configuration (in-cluster, else kubeconfig).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesTarget {
    /// The container image; the task's `command`/`args` override its entrypoint.
    pub image: String,
    /// The Job's namespace [default: the configuration's, else `default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// CPU request and limit, a Kubernetes quantity (`500m`, `2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory request and limit, a Kubernetes quantity (`512Mi`, `2Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// How long a finished Job is kept before Kubernetes deletes it [default: 3600].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u32>,
}

/// Where a `lambda` task runs: an existing Lambda function, invoked
/// asynchronously (`InvocationType: Event`) with the worker contract as
/// its event (docs/lambda.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaTarget {
    /// The function's name, ARN or partial ARN.
    pub function: String,
    /// A version or alias [default: `$LATEST`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
}

/// Where an `azure` task runs: an existing Azure Container Apps Job (trigger
/// type `Manual`), started through the ARM REST API with the task's
/// command and the worker contract's environment as template overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureTarget {
    pub subscription: String,
    pub resource_group: String,
    pub job: String,
    /// The container whose command and environment are overridden
    /// [default: the job template's first].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// A pod toleration, as in the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Exists` or `Equal` [default: `Equal`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; empty matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// How often and how soon a failed attempt is tried again.
///
/// Written either as a bare count (`retries: 3`) or in full
/// (`retries: {count: 3, backoff: 10s, max_backoff: 5m}`). The delay before
/// retry `n` (1-based) is `backoff * 2^(n-1)`, capped at `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "duration::RetryRepr")]
pub struct RetryPolicy {
    pub count: u32,
    #[serde(with = "duration::required")]
    pub backoff: Duration,
    #[serde(with = "duration::required")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            count: 0,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    fn is_none(&self) -> bool {
        *self == RetryPolicy::default()
    }

    /// Delay before the attempt that follows failed attempt `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

pub(crate) mod duration;
