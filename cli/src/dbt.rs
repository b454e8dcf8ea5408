//! `ork dbt import`: a dbt project's manifest as an Ork workflow, one task
//! per model, seed and snapshot, wired by the manifest's `depends_on.nodes`.
//!
//! The manifest is `target/manifest.json` of the project, made (or remade,
//! when a project file is newer) by `dbt parse`. `--select`/`--exclude` are
//! dbt's own syntax, resolved by `dbt ls`. See docs/dbt.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use ork_core::spec::{ExecutorKind, TaskSpec, WorkflowSpec};
use serde::Deserialize;
use serde_json::Value;

/// The flags of `ork dbt import`.
#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// The dbt project's directory (holding dbt_project.yml).
    pub path: PathBuf,
    /// The dbt target (profile output) the tasks use.
    #[arg(long)]
    pub target: Option<String>,
    /// Where profiles.yml is (default: the project directory when it has one).
    #[arg(long)]
    pub profiles_dir: Option<PathBuf>,
    /// The dbt program, for parsing here and in every task.
    #[arg(long, default_value = "dbt")]
    pub dbt: String,
    /// dbt node selection (dbt's syntax, passed to `dbt ls`); repeatable.
    #[arg(long)]
    pub select: Vec<String>,
    /// dbt node exclusion (dbt's syntax, passed to `dbt ls`); repeatable.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// `build`: one `dbt build --select NODE` per node, its tests folded in;
    /// `run`: `dbt run`/`seed`/`snapshot` per node and a `dbt test` task per test.
    #[arg(long, value_enum, default_value_t = Mode::Build)]
    pub mode: Mode,
    /// The executor of every task (a cloud executor needs its block from --overlay).
    #[arg(long, default_value = "process")]
    pub executor: String,
    /// A YAML file of task fields merged into the generated tasks:
    /// `defaults:` into every task, `tasks: {NAME: {...}}` into one.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// The project directory as the tasks see it (DBT_PROJECT_DIR). Default:
    /// the absolute PATH for local executors, unset (the image's working
    /// directory) for containers.
    #[arg(long)]
    pub task_project_dir: Option<String>,
    /// Run every task's dbt under `flock FILE` (relative: to the project),
    /// one at a time: for DuckDB, which has one writer per database file.
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// The workflow's name (default: the dbt project's name, `_` as `-`).
    #[arg(long)]
    pub name: Option<String>,
    /// Write the workflow YAML here (default: standard output, unless --apply).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Store the workflow (a new version when it changed).
    #[arg(long)]
    pub apply: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Build,
    Run,
}

#[derive(Deserialize)]
struct Manifest {
    nodes: BTreeMap<String, Node>,
}

#[derive(Deserialize)]
struct Node {
    resource_type: String,
    name: String,
    #[serde(default)]
    depends_on: DependsOn,
    #[serde(default)]
    config: NodeConfig,
}

#[derive(Deserialize, Default)]
struct DependsOn {
    #[serde(default)]
    nodes: Vec<String>,
}

#[derive(Deserialize, Default)]
struct NodeConfig {
    #[serde(default)]
    materialized: Option<String>,
}

impl Node {
    /// A node that becomes a task of its own (tests may be folded).
    fn is_buildable(&self) -> bool {
        matches!(self.resource_type.as_str(), "model" | "seed" | "snapshot")
            && self.config.materialized.as_deref() != Some("ephemeral")
    }
}

/// The overlay file: task fields for every task and for single tasks.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Overlay {
    #[serde(default)]
    defaults: serde_json::Map<String, Value>,
    #[serde(default)]
    tasks: BTreeMap<String, serde_json::Map<String, Value>>,
}

/// Reads the project (parsing and listing with dbt as needed) and builds the workflow.
pub fn import(args: &ImportArgs) -> Result<WorkflowSpec> {
    let project = std::fs::canonicalize(&args.path)
        .with_context(|| format!("no dbt project at {}", args.path.display()))?;
    let project_file = project.join("dbt_project.yml");
    let project_yaml: Value = serde_norway::from_str(
        &std::fs::read_to_string(&project_file)
            .with_context(|| format!("cannot read {}", project_file.display()))?,
    )
    .with_context(|| format!("{} is not YAML", project_file.display()))?;
    let project_name = project_yaml["name"]
        .as_str()
        .ok_or_else(|| anyhow!("{} has no name", project_file.display()))?
        .to_owned();
    let profiles_dir = match &args.profiles_dir {
        Some(d) => Some(
            std::fs::canonicalize(d).with_context(|| format!("no profiles dir {}", d.display()))?,
        ),
        None => project
            .join("profiles.yml")
            .exists()
            .then(|| project.clone()),
    };
    // A path (not a name on PATH) is made absolute: the tasks run elsewhere.
    let program = if args.dbt.contains('/') {
        std::fs::canonicalize(&args.dbt)
            .with_context(|| format!("no dbt program {}", args.dbt))?
            .display()
            .to_string()
    } else {
        args.dbt.clone()
    };
    let dbt = Dbt {
        program: &program,
        project: &project,
        profiles_dir: profiles_dir.as_deref(),
        target: args.target.as_deref(),
        lock: args.lock.as_ref().map(|l| project.join(l)),
    };

    let manifest_path = project.join("target/manifest.json");
    if is_stale(&manifest_path, &project) {
        dbt.run(&["parse"])?;
    }
    let selected: Option<BTreeSet<String>> = if args.select.is_empty() && args.exclude.is_empty() {
        None
    } else {
        Some(dbt.list(&args.select, &args.exclude)?)
    };
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a dbt manifest", manifest_path.display()))?;

    let kind: ExecutorKind = args.executor.parse().map_err(|e: String| anyhow!(e))?;
    let local = matches!(kind, ExecutorKind::Process | ExecutorKind::Mock);
    let task_project_dir = args
        .task_project_dir
        .clone()
        .or_else(|| local.then(|| project.display().to_string()));
    let mut env = BTreeMap::new();
    if let Some(dir) = &task_project_dir {
        env.insert("DBT_PROJECT_DIR".to_owned(), dir.clone());
    }
    if let Some(dir) = &profiles_dir {
        // The project's own profiles.yml is where the tasks see the
        // project; another directory only for local tasks (containers
        // bring their profiles in the image, or DBT_PROFILES_DIR by overlay).
        let in_task = if *dir == project {
            task_project_dir.clone()
        } else if local && args.task_project_dir.is_none() {
            Some(dir.display().to_string())
        } else {
            None
        };
        if let Some(d) = in_task {
            env.insert("DBT_PROFILES_DIR".to_owned(), d);
        }
    }
    let is_in = |id: &str| selected.as_ref().is_none_or(|s| s.contains(id));

    // Task names by node id, for the nodes that become tasks.
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    for (id, node) in &manifest.nodes {
        if node.is_buildable() && is_in(id) {
            names.insert(id, node.name.clone());
        }
    }
    let mut tasks = BTreeMap::new();
    for (id, node) in &manifest.nodes {
        let Some(name) = names.get(id.as_str()) else {
            continue;
        };
        let verb = match (args.mode, node.resource_type.as_str()) {
            (Mode::Build, _) => "build",
            (Mode::Run, "seed") => "seed",
            (Mode::Run, "snapshot") => "snapshot",
            (Mode::Run, _) => "run",
        };
        let mut cmd = vec![verb.to_owned(), "--select".to_owned(), node.name.clone()];
        if args.mode == Mode::Build {
            // Only the tests of this node alone; tests of several nodes get
            // a task of their own, after all of them.
            cmd.extend(["--indirect-selection".into(), "cautious".into()]);
        }
        let deps = upstream(&manifest, &names, id);
        tasks.insert(name.clone(), dbt.task(cmd, deps, &env));
    }
    for (id, node) in &manifest.nodes {
        if node.resource_type != "test" || !is_in(id) {
            continue;
        }
        let deps = upstream(&manifest, &names, id);
        if deps.is_empty() || (args.mode == Mode::Build && deps.len() == 1) {
            continue; // folded into its model's `dbt build`, or on nothing built here
        }
        let cmd = vec!["test".to_owned(), "--select".to_owned(), node.name.clone()];
        tasks.insert(format!("test.{}", node.name), dbt.task(cmd, deps, &env));
    }
    if tasks.is_empty() {
        bail!("the selection has no model, seed or snapshot");
    }
    for task in tasks.values_mut() {
        task.executor = kind;
    }
    if let Some(path) = &args.overlay {
        apply_overlay(&mut tasks, path)?;
    }
    let spec = WorkflowSpec {
        name: args
            .name
            .clone()
            .unwrap_or_else(|| project_name.replace('_', "-")),
        description: Some(format!(
            "dbt project {project_name} ({}), imported by ork dbt import",
            project.display()
        )),
        tasks,
        base_dir: None,
        schedule: None,
        timezone: None,
        catchup: false,
        params: BTreeMap::new(),
        concurrency: None,
        rate_limits: BTreeMap::new(),
    };
    spec.validate()?;
    Ok(spec)
}

/// The task names that `id` depends on, through nodes that are not tasks
/// (unselected or ephemeral models), which pass their own upstream on.
fn upstream(manifest: &Manifest, names: &BTreeMap<&str, String>, id: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = manifest.nodes[id]
        .depends_on
        .nodes
        .iter()
        .map(String::as_str)
        .collect();
    while let Some(dep) = todo.pop() {
        if !seen.insert(dep) {
            continue;
        }
        if let Some(name) = names.get(dep) {
            out.insert(name.clone());
        } else if let Some(node) = manifest.nodes.get(dep) {
            todo.extend(node.depends_on.nodes.iter().map(String::as_str));
        }
    }
    out.into_iter().collect()
}

fn apply_overlay(tasks: &mut BTreeMap<String, TaskSpec>, path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let overlay: Overlay = serde_norway::from_str(&text)
        .with_context(|| format!("{}: not an overlay", path.display()))?;
    if let Some(name) = overlay.tasks.keys().find(|n| !tasks.contains_key(*n)) {
        bail!("{}: no task {name:?} was imported", path.display());
    }
    for (name, task) in tasks.iter_mut() {
        let mut value = serde_json::to_value(&*task)?;
        let fields = value.as_object_mut().expect("a task is an object");
        for layer in std::iter::once(&overlay.defaults).chain(overlay.tasks.get(name)) {
            for (k, v) in layer {
                match (k.as_str(), fields.get_mut(k), v) {
                    // env adds to (and overrides) the generated variables.
                    ("env", Some(Value::Object(have)), Value::Object(add)) => {
                        have.extend(add.clone())
                    }
                    _ => {
                        fields.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        *task = serde_json::from_value(value)
            .with_context(|| format!("{}: task {name:?}", path.display()))?;
    }
    Ok(())
}

/// How dbt is run here, and in the tasks.
struct Dbt<'a> {
    program: &'a str,
    project: &'a Path,
    profiles_dir: Option<&'a Path>,
    target: Option<&'a str>,
    lock: Option<PathBuf>,
}

impl Dbt<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.program);
        c.args(args)
            .current_dir(self.project)
            .env("DBT_PROJECT_DIR", self.project);
        if let Some(dir) = self.profiles_dir {
            c.env("DBT_PROFILES_DIR", dir);
        }
        if let Some(t) = self.target {
            c.args(["--target", t]);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command(args)
            .output()
            .with_context(|| format!("cannot run {} (set --dbt)", self.program))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "`{} {}` failed ({}):\n{stdout}{}",
                self.program,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// The unique ids `dbt ls` selects (it also refreshes the manifest).
    fn list(&self, select: &[String], exclude: &[String]) -> Result<BTreeSet<String>> {
        let mut args = vec!["ls", "--output", "json", "--output-keys", "unique_id"];
        for t in ["model", "seed", "snapshot", "test"] {
            args.extend(["--resource-type", t]);
        }
        for s in select {
            args.extend(["--select", s]);
        }
        for e in exclude {
            args.extend(["--exclude", e]);
        }
        let out = self.run(&args)?;
        Ok(out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter_map(|v| v["unique_id"].as_str().map(str::to_owned))
            .collect())
    }

    /// A task running `dbt ARGS` after `deps`.
    fn task(
        &self,
        mut args: Vec<String>,
        deps: Vec<String>,
        env: &BTreeMap<String, String>,
    ) -> TaskSpec {
        if let Some(t) = self.target {
            args.extend(["--target".into(), t.into()]);
        }
        let command = match &self.lock {
            Some(lock) => {
                args.splice(0..0, [lock.display().to_string(), self.program.to_owned()]);
                "flock".to_owned()
            }
            None => self.program.to_owned(),
        };
        TaskSpec {
            command: Some(command.into()),
            args,
            env: env.clone(),
            depends_on: deps,
            ..TaskSpec::default()
        }
    }
}

/// Whether the manifest is missing or older than a file of the project.
fn is_stale(manifest: &Path, project: &Path) -> bool {
    let Ok(made) = std::fs::metadata(manifest).and_then(|m| m.modified()) else {
        return true;
    };
    newest(project, 0).is_some_and(|t| t > made)
}

/// The newest modification time under `dir`, skipping dbt's output directories.
fn newest(dir: &Path, depth: usize) -> Option<SystemTime> {
    let mut latest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        if depth == 0
            && matches!(
                name.to_str(),
                Some("target" | "logs" | "dbt_packages" | "dbt_modules")
            )
            || name.to_str().is_some_and(|n| n.starts_with('.'))
        {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let t = if meta.is_dir() {
            newest(&entry.path(), depth + 1)
        } else {
            meta.modified().ok()
        };
        latest = latest.max(t);
    }
    latest
}
