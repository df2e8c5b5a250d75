//! Every job's task, compiled and checked before anything runs.
//!
//! A task path `a.b.c` resolves to function `c` in module `a/b.rhai` (first in the
//! `taskspath` folders, then in the bundled stdlib). Each module is compiled once
//! per configuration snapshot and shared by every fire and node. The call shape is
//! decided here too: handle, then `args`, then `kwargs` as a map when the job has
//! them or the function takes one more parameter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, FnAccess, Map, Scope};

use super::engine::{self, CallGuard, Origin, TIME_UP, find_module};
use super::handle;
use super::handle::{Output, Ssh};
use crate::config::{Config, Diagnostic, Job, Location, SourceFile, TaskPath};
use crate::resource::{self, Plan};
use crate::store::ResourceOutcome;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("job `{0}` is not in the current configuration")]
    UnknownJob(String),
    /// The limit, and where the script was (`file:line:col in fn f`).
    #[error("task stopped after task_max_operations ({0}) script operations at {1}; is there an endless loop?")]
    TooManyOperations(u64, String),
    #[error("task stopped after running longer than task_max_time ({0}) at {1}")]
    TimeUp(String, String),
    #[error("task stopped: it was cancelled")]
    Cancelled,
    #[error("{0}")]
    Failed(String),
}

/// A deadline far enough away to mean "never" (a century).
const FAR: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

pub(crate) struct CompiledModule {
    pub(crate) ast: AST,
    text: String,
    /// The module's file, as errors name it.
    pub(crate) source: String,
    /// Public functions and their parameter counts (the handle included).
    pub(crate) functions: HashMap<String, Vec<usize>>,
    /// Where a limit can stop it at a known place (`engine::stop_points`).
    stop_points: Arc<[rhai::debugger::BreakPoint]>,
}

/// How one job calls its task.
struct TaskCall {
    module: Arc<CompiledModule>,
    function: String,
    /// The kwargs map is passed as the last argument (the function takes it).
    pass_kwargs: bool,
}

/// What one job runs: its resources, then its task.
struct Prepared {
    task: Option<TaskCall>,
    resources: Option<Plan>,
    /// The job, whose `args` and `kwargs` the call passes (and `when:` and templates
    /// see), made Rhai values at each call: kept once, as the configuration has
    /// them (10,000 jobs' arguments kept twice more as Rhai values cost ~15 MB).
    /// `None` for a notifier.
    job: Option<Arc<Job>>,
    /// Where a limit can stop the call: the stop points of every module it runs.
    stop_points: Arc<[rhai::debugger::BreakPoint]>,
}

/// What a task call did: each resource's outcome, and how it ended.
pub struct Called {
    pub resources: Vec<ResourceOutcome>,
    pub result: Result<(), TaskError>,
}

pub struct Catalog {
    engine: Engine,
    /// Each compiled module's text, to tell which changed between two catalogs.
    sources: HashMap<String, String>,
    jobs: HashMap<String, Box<Prepared>>,
    /// Notifier tasks (`notifications: [{task: …}]`), by task path, each called as
    /// `f(ssh, event)`.
    notifiers: HashMap<String, Prepared>,
    max_operations: u64,
    max_time: std::time::Duration,
}

impl Catalog {
    /// Compiles the modules the jobs use and checks every job against its function.
    pub fn build(config: &Config) -> (Catalog, Vec<Diagnostic>) {
        let settings = &config.settings;
        let mut engine = engine::build(settings);
        let imported = engine::allow_imports(&mut engine, settings);
        let mut modules: HashMap<String, Option<Arc<CompiledModule>>> = HashMap::new();
        let mut diagnostics = Vec::new();
        let mut jobs = HashMap::new();
        // Rejected jobs are checked for their task too (all problems at once), never prepared.
        let rejected = config.rejected_jobs.iter().map(|job| (job, false));
        for (job, valid) in config.jobs.values().map(|job| (job, true)).chain(rejected) {
            let mut ready = true;
            let task = match &job.task {
                None => None,
                Some(path) => {
                    let module = modules
                        .entry(path.module.clone())
                        .or_insert_with(|| {
                            let user = format!("task `{path}`");
                            compile(&engine, config, &path.module, &user, &job.task_at, &mut diagnostics)
                        })
                        .clone();
                    match module {
                        None => {
                            if let Ok(None) = find_module(&settings.taskspath, &path.module) {
                                diagnostics.push(no_module(config, job, path));
                            }
                            ready = false;
                            None
                        }
                        Some(module) => match prepare(job, path, &module) {
                            Ok(call) => Some(call),
                            Err(d) => {
                                diagnostics.push(d);
                                ready = false;
                                None
                            }
                        },
                    }
                }
            };
            let resources = if job.resources.is_empty() && job.handlers.is_empty() {
                None
            } else {
                let mut compile_type = |module: &str, at: &Location| {
                    let user = format!("resource type `{}`", module.strip_prefix("loom/resource/").unwrap_or(module));
                    match find_module(&settings.taskspath, module) {
                        Ok(None) => return Ok(None),
                        Err(why) => {
                            diagnostics.push(Diagnostic::error(why).at(at.clone()));
                            return Err(());
                        }
                        Ok(Some(_)) => {}
                    }
                    let compiled = modules
                        .entry(module.to_string())
                        .or_insert_with(|| compile(&engine, config, module, &user, at, &mut diagnostics))
                        .clone();
                    compiled.map(Some).ok_or(())
                };
                let mut found = Vec::new();
                let plan = resource::prepare(&engine, job, &mut compile_type, &mut found);
                diagnostics.extend(found);
                if plan.is_none() {
                    ready = false;
                }
                plan
            };
            if valid && ready {
                jobs.insert(job.name.clone(), Box::new(assemble(job, task, resources)));
            }
        }
        let notifiers = prepare_notifiers(&engine, config, &mut modules, &mut diagnostics);
        engine::forbid_imports(&mut engine);
        let mut sources: HashMap<String, String> = std::mem::take(&mut *imported.lock().expect("module texts"));
        sources.extend(
            modules.iter().filter_map(|(name, module)| module.as_ref().map(|m| (name.clone(), m.text.clone()))),
        );
        let catalog = Catalog {
            engine,
            sources,
            jobs,
            notifiers,
            max_operations: settings.task_max_operations,
            max_time: settings.task_max_time,
        };
        (catalog, diagnostics)
    }

    /// Modules compiled here whose text `before` did not have.
    pub fn changed_modules(&self, before: &Catalog) -> Vec<String> {
        let mut changed: Vec<String> = self
            .sources
            .iter()
            .filter(|(module, text)| before.sources.get(*module) != Some(*text))
            .map(|(module, _)| module.clone())
            .collect();
        changed.sort();
        changed
    }

    /// The text of a compiled module (`a/b`), if this catalog has it.
    pub fn source(&self, module: &str) -> Option<&str> {
        self.sources.get(module).map(String::as_str)
    }

    pub fn contains(&self, job: &str) -> bool {
        self.jobs.contains_key(job)
    }

    /// Applies `job`'s resources (only checking them when `check`) and then, unless
    /// one failed or in check mode, its task, to the node behind `ssh`. Blocks: run
    /// it on a script thread (`scripts::submit`).
    pub fn call(&self, job: &str, ssh: Ssh, output: Arc<Output>, check: bool) -> Called {
        let Some(prepared) = self.jobs.get(job) else {
            return Called { resources: Vec::new(), result: Err(TaskError::UnknownJob(job.to_string())) };
        };
        let ssh_cancel = ssh.cancel_token();
        // `task_max_time` is bounded by `loom check`; a far deadline stands in for overflow.
        let now = Instant::now();
        let deadline = now.checked_add(self.max_time).unwrap_or(now + FAR);
        let guard = CallGuard::enter(Arc::clone(&output), deadline, ssh_cancel, prepared.stop_points.clone());
        let (values, kwargs) = prepared.values();
        let mut outcomes = Vec::new();
        if let Some(plan) = &prepared.resources {
            let context = resource::run::Context {
                engine: &self.engine,
                ssh: &ssh,
                output: &output,
                job,
                args: &values,
                kwargs: kwargs.as_ref(),
                check,
            };
            let (ran, failure) = resource::run::run(&context, plan);
            outcomes = ran;
            if let Some(failure) = failure {
                let stopped = guard.stopped_by();
                let result = match &failure.error {
                    Some(err)
                        if stopped.is_some() || matches!(err.unwrap_inner(), EvalAltResult::ErrorTerminated(..)) =>
                    {
                        Err(self.explain(err, stopped, prepared))
                    }
                    _ => Err(TaskError::Failed(format!("resource {} failed: {}", failure.label, failure.message))),
                };
                return Called { resources: outcomes, result };
            }
        }
        let Some(task) = prepared.task.as_ref().filter(|_| !check) else {
            let result = match guard.stopped_by() {
                Some(token) => Err(self.stopped(token, None, prepared)),
                None => Ok(()),
            };
            return Called { resources: outcomes, result };
        };
        let mut args = Vec::with_capacity(values.len() + 2);
        args.push(Dynamic::from(ssh));
        args.extend(values);
        if task.pass_kwargs {
            args.push(Dynamic::from_map(kwargs.unwrap_or_default()));
        }
        let result = self.engine.call_fn_with_options::<Dynamic>(
            CallFnOptions::new(),
            &mut Scope::new(),
            &task.module.ast,
            &task.function,
            args,
        );
        let result = match (result, guard.stopped_by()) {
            (Err(err), stopped_by) => Err(self.explain(&err, stopped_by, prepared)),
            // The script caught the stop (`try`) and returned: still stopped, place unknown.
            (Ok(_), Some(token)) => Err(self.stopped(token, None, prepared)),
            (Ok(_), None) => Ok(()),
        };
        Called { resources: outcomes, result }
    }

    /// Calls the notifier task `task` as `f(ssh, event)`, bounded as every task
    /// call is. Blocks: run it on a script thread.
    pub fn notify(&self, task: &str, ssh: Ssh, output: Arc<Output>, event: Map) -> Result<(), TaskError> {
        let prepared = self.notifiers.get(task).ok_or_else(|| {
            TaskError::Failed(format!("the notifier task `{task}` is not in the current configuration"))
        })?;
        let call = prepared.task.as_ref().expect("a notifier is a task");
        let ssh_cancel = ssh.cancel_token();
        let now = Instant::now();
        let deadline = now.checked_add(self.max_time).unwrap_or(now + FAR);
        let guard = CallGuard::enter(output, deadline, ssh_cancel, prepared.stop_points.clone());
        let result = self.engine.call_fn_with_options::<Dynamic>(
            CallFnOptions::new(),
            &mut Scope::new(),
            &call.module.ast,
            &call.function,
            vec![Dynamic::from(ssh), Dynamic::from_map(event)],
        );
        match (result, guard.stopped_by()) {
            (Err(err), stopped_by) => Err(self.explain(&err, stopped_by, prepared)),
            (Ok(_), Some(token)) => Err(self.stopped(token, None, prepared)),
            (Ok(_), None) => Ok(()),
        }
    }

    fn explain(&self, err: &EvalAltResult, stopped_by: Option<&str>, prepared: &Prepared) -> TaskError {
        match (err.unwrap_inner(), stopped_by) {
            // Raised by the debugger hook at the node the script was at (`engine::build`).
            (EvalAltResult::ErrorRuntime(..), Some(token)) => self.stopped(token, Some(err), prepared),
            // Rhai's own stop keeps no reliable position (a node-less `loop {}`).
            (_, Some(token)) => self.stopped(token, None, prepared),
            (EvalAltResult::ErrorTerminated(..), None) => TaskError::Cancelled,
            _ => {
                let (source, function) = prepared.place();
                TaskError::Failed(describe(err, source, function))
            }
        }
    }

    fn stopped(&self, token: &str, err: Option<&EvalAltResult>, prepared: &Prepared) -> TaskError {
        let at = stopped_at(err, prepared);
        if token == TIME_UP {
            TaskError::TimeUp(humantime::format_duration(self.max_time).to_string(), at)
        } else {
            TaskError::TooManyOperations(self.max_operations, at)
        }
    }
}

/// Where a script was when a limit stopped it: `file:line:col in fn f` when the
/// error kept the place, else the task's file and function.
fn stopped_at(err: Option<&EvalAltResult>, prepared: &Prepared) -> String {
    let (source, function) = prepared.place();
    let described = err.map(|err| describe(err, source, function)).unwrap_or_default();
    match described.rfind(" (at ") {
        Some(cut) if described.ends_with(')') => described[cut + 5..described.len() - 1].to_string(),
        _ => format!("{source} (in a call of fn {function})"),
    }
}

/// The innermost error's message, and where in which script it happened.
pub(crate) fn describe(err: &EvalAltResult, module: &str, function: &str) -> String {
    let mut source = Some(module.to_string());
    let mut functions = vec![function.to_string()];
    let mut current = err;
    loop {
        match current {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, _) => {
                functions.push(name.clone());
                if !src.is_empty() {
                    source = Some(src.clone());
                }
                current = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, _) => {
                source = Some(name.clone());
                current = inner;
            }
            _ => break,
        }
    }
    let position = current.position();
    let message = match current {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        other => {
            let text = other.to_string();
            match text.rfind(" (line ") {
                Some(cut) if text.ends_with(')') => text[..cut].to_string(),
                _ => text,
            }
        }
    };
    match (position.line(), source) {
        (Some(line), Some(source)) => {
            let column = position.position().unwrap_or(1);
            let function =
                functions.last().filter(|f| !f.is_empty()).map(|f| format!(" in fn {f}")).unwrap_or_default();
            format!("{message} (at {source}:{line}:{column}{function})")
        }
        (Some(line), None) => format!("{message} (line {line})"),
        _ => message,
    }
}

/// Compiles module `module` (`a/b`); `user` names what needs it in messages
/// ("task `a.b.c`", "resource type `file`"), written at `task_at`.
fn compile(
    engine: &Engine,
    config: &Config,
    module: &str,
    user: &str,
    task_at: &Location,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Arc<CompiledModule>> {
    let (origin, text) = match find_module(&config.settings.taskspath, module) {
        Ok(found) => found?,
        Err(why) => {
            diagnostics.push(Diagnostic::error(why).at(task_at.clone()).help(format!("used by {user}")));
            return None;
        }
    };
    let file = Arc::new(SourceFile::new(origin.path(), text.clone()));
    // Imports are resolved, compiled and run now, and kept inside the AST.
    let mut ast = match engine.compile_into_self_contained(&Scope::new(), &text) {
        Ok(ast) => ast,
        Err(err) => {
            let d = match *err {
                EvalAltResult::ErrorParsing(why, at) => {
                    let (line, column) = (at.line().unwrap_or(1), at.position().unwrap_or(1));
                    Diagnostic::error(format!("task module {} does not compile: {why}", origin.display()))
                        .at(Location::new(&file, line, column))
                }
                other => import_failed(&other, &origin.display(), &file),
            };
            diagnostics.push(d.help(format!("used by {user} at {task_at}")));
            return None;
        }
    };
    let source = origin.path().display().to_string();
    ast.set_source(source.clone());
    let mut functions: HashMap<String, Vec<usize>> = HashMap::new();
    for f in ast.iter_functions() {
        if f.access != FnAccess::Private {
            functions.entry(f.name.to_string()).or_default().push(f.params.len());
        }
        if let (Origin::File(_), Some(warning)) = (&origin, shadowed_method(f.name, f.params.len(), &file)) {
            diagnostics.push(warning);
        }
    }
    for at in engine::endless_loops(&ast) {
        let (line, column) = (at.line().unwrap_or(1), at.position().unwrap_or(1));
        diagnostics.push(
            Diagnostic::error(format!("task module {}: this loop never ends (its body is empty)", origin.display()))
                .at(Location::new(&file, line, column))
                .help("a task stopped by task_max_time or task_max_operations fails; give the loop a body that can `break`"),
        );
    }
    let stop_points = engine::stop_points(&ast);
    Some(Arc::new(CompiledModule { ast, text, source, functions, stop_points }))
}

/// An `import` that could not be resolved or whose module fails, at the import
/// that names it (the resolver is not told where that is).
fn import_failed(err: &EvalAltResult, module: &str, file: &Arc<SourceFile>) -> Diagnostic {
    let mut current = err;
    let mut named = None;
    let mut inner_source = None;
    loop {
        match current {
            EvalAltResult::ErrorModuleNotFound(path, _) => {
                named.get_or_insert_with(|| path.clone());
                break;
            }
            EvalAltResult::ErrorInModule(source, inner, _) => {
                // The innermost module is where the failing statement is.
                inner_source = Some(source.clone());
                current = inner;
            }
            _ => break,
        }
    }
    let why = describe(current, inner_source.as_deref().unwrap_or(module), "");
    let (line, column) = file
        .text
        .lines()
        .enumerate()
        .find_map(|(i, text)| {
            let at = text.find("import")?;
            let quoted = named.as_ref().is_none_or(|n| text.contains(&format!("\"{n}\"")));
            quoted.then_some((i + 1, at + 1))
        })
        .unwrap_or((1, 1));
    let message = match &named {
        Some(path) => format!(
            "task module {module} imports `{path}`, which is not in the taskspath folders or the bundled stdlib"
        ),
        None => format!("task module {module}: an import failed: {why}"),
    };
    Diagnostic::error(message).at(Location::new(file, line, column))
}

/// Rhai calls a script function for `ssh.name(a, b)` when the module defines
/// `fn name(x, y)` (binding `ssh` as `this`), which silently bypasses the handle.
fn shadowed_method(name: &str, params: usize, file: &Arc<SourceFile>) -> Option<Diagnostic> {
    let (_, arities) = handle::METHODS.iter().find(|(method, _)| *method == name)?;
    if !arities.contains(&params) {
        return None;
    }
    let needle = format!("fn {name}(");
    let (line, column) = file
        .text
        .lines()
        .enumerate()
        .find_map(|(i, text)| text.find(&needle).map(|c| (i + 1, c + 4)))
        .unwrap_or((1, 1));
    Some(
        Diagnostic::warning(format!(
            "fn {name} with {params} parameter(s) captures `ssh.{name}(…)` calls with {params} argument(s) in this module"
        ))
        .at(Location::new(file, line, column))
        .help(format!("Rhai binds `ssh` as `this` for such calls; write `{name}(ssh, …)` to reach the handle's method")),
    )
}

fn no_module(config: &Config, job: &Job, task: &TaskPath) -> Diagnostic {
    let folders: Vec<String> = config
        .settings
        .taskspath
        .iter()
        .map(|p| p.display().to_string())
        .chain(["the bundled stdlib".to_string()])
        .collect();
    Diagnostic::error(format!(
        "task `{}` of job `{}` resolves to no module: {}.rhai is not in {}",
        task,
        job.name,
        task.module,
        folders.join(", ")
    ))
    .at(job.task_at.clone())
}

/// Compiles and checks every notifier task of the main file and the jobs: each must
/// be a public function taking `(ssh, event)`. Errors point at the rule's `task:`.
fn prepare_notifiers(
    engine: &Engine,
    config: &Config,
    modules: &mut HashMap<String, Option<Arc<CompiledModule>>>,
    diagnostics: &mut Vec<Diagnostic>,
) -> HashMap<String, Prepared> {
    let mut notifiers = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let jobs = config.jobs.values().chain(&config.rejected_jobs);
    let rules = config.settings.notifications.iter().chain(jobs.flat_map(|job| &job.notifications));
    for rule in rules {
        let crate::config::notify::NotifyTarget::Task(task) = &rule.target else { continue };
        if !seen.insert(task.to_string()) {
            continue;
        }
        let at = &rule.target_at;
        let module = modules
            .entry(task.module.clone())
            .or_insert_with(|| {
                compile(engine, config, &task.module, &format!("notifier task `{task}`"), at, diagnostics)
            })
            .clone();
        let Some(module) = module else {
            if let Ok(None) = find_module(&config.settings.taskspath, &task.module) {
                let folders: Vec<String> = config
                    .settings
                    .taskspath
                    .iter()
                    .map(|p| p.display().to_string())
                    .chain(["the bundled stdlib".to_string()])
                    .collect();
                diagnostics.push(
                    Diagnostic::error(format!(
                        "notifier task `{task}` resolves to no module: {}.rhai is not in {}",
                        task.module,
                        folders.join(", ")
                    ))
                    .at(at.clone()),
                );
            }
            continue;
        };
        let function = [task.function.clone(), format!("{}_", task.function)]
            .into_iter()
            .find(|name| module.functions.contains_key(name))
            .unwrap_or_else(|| task.function.clone());
        match module.functions.get(&function) {
            None => {
                let mut names: Vec<&str> = module.functions.keys().map(String::as_str).collect();
                names.sort_unstable();
                diagnostics.push(
                    Diagnostic::error(format!(
                        "notifier task `{task}`: module {}.rhai has no public function `{function}`",
                        task.module
                    ))
                    .at(at.clone())
                    .help(format!("functions there: {}", names.join(", "))),
                );
            }
            Some(arities) if !arities.contains(&2) => {
                let takes: Vec<String> = arities.iter().map(|n| n.to_string()).collect();
                diagnostics.push(
                    Diagnostic::error(format!(
                        "notifier task `{task}` takes {} parameter(s); a notifier is called as f(ssh, event)",
                        takes.join(" or ")
                    ))
                    .at(at.clone())
                    .help("write it as fn name(ssh, event) { … }: `event` is the notification's body as a map"),
                );
            }
            Some(_) => {
                let prepared = Prepared {
                    stop_points: module.stop_points.clone(),
                    task: Some(TaskCall { module: Arc::clone(&module), function, pass_kwargs: false }),
                    resources: None,
                    job: None,
                };
                notifiers.insert(task.to_string(), prepared);
            }
        }
    }
    notifiers
}

/// A job's task and resources as one call; its stop points are those of every module it runs.
fn assemble(job: &Arc<Job>, task: Option<TaskCall>, resources: Option<Plan>) -> Prepared {
    let mut modules: Vec<Arc<CompiledModule>> = resources.as_ref().map(Plan::modules).unwrap_or_default();
    modules.extend(task.as_ref().map(|t| Arc::clone(&t.module)));
    // One module's stop points are shared with it (most jobs: one task, thousands of jobs).
    let points: Arc<[rhai::debugger::BreakPoint]> = match &modules[..] {
        [module] => Arc::clone(&module.stop_points),
        _ => modules.iter().flat_map(|module| module.stop_points.iter().cloned()).collect(),
    };
    Prepared { task, resources, job: Some(Arc::clone(job)), stop_points: points }
}

impl Prepared {
    /// The file and function an error without a place of its own names: the task's,
    /// else the first resource type's `check`.
    fn place(&self) -> (&str, &str) {
        match (&self.task, self.resources.as_ref().and_then(Plan::first_module)) {
            (Some(task), _) => (&task.module.source, &task.function),
            (None, Some(module)) => (&module.source, "check"),
            (None, None) => ("", ""),
        }
    }

    /// The job's `args` and `kwargs` as Rhai values (none for a notifier).
    fn values(&self) -> (Vec<Dynamic>, Option<Map>) {
        let Some(job) = &self.job else { return (Vec::new(), None) };
        let value = |v: &serde_json::Value| rhai::serde::to_dynamic(v).expect("JSON values convert to Rhai values");
        let kwargs = job
            .kwargs
            .as_ref()
            .map(|map| rhai::serde::to_dynamic(map).expect("JSON values convert to Rhai values").cast::<Map>());
        (job.args.iter().map(value).collect(), kwargs)
    }
}

fn prepare(job: &Job, task: &TaskPath, module: &Arc<CompiledModule>) -> Result<TaskCall, Diagnostic> {
    // A task named like a Rhai reserved word (`package`) is written `package_`.
    let function = [task.function.clone(), format!("{}_", task.function)]
        .into_iter()
        .find(|name| module.functions.contains_key(name))
        .unwrap_or_else(|| task.function.clone());
    let function = &function;
    let Some(arities) = module.functions.get(function) else {
        let mut names: Vec<&str> = module.functions.keys().map(String::as_str).collect();
        names.sort_unstable();
        return Err(Diagnostic::error(format!(
            "task `{}` of job `{}`: module {}.rhai has no public function `{function}`",
            task, job.name, task.module
        ))
        .at(job.task_at.clone())
        .help(format!("functions there: {}", names.join(", "))));
    };
    let given = job.args.len();
    let pass_kwargs = if job.kwargs.is_some() {
        arities.contains(&(given + 2)).then_some(true)
    } else if arities.contains(&(given + 1)) {
        Some(false)
    } else {
        arities.contains(&(given + 2)).then_some(true)
    };
    let Some(pass_kwargs) = pass_kwargs else {
        let takes: Vec<String> = arities.iter().map(|n| (n - 1).to_string()).collect();
        let kwargs = if job.kwargs.is_some() { " plus a kwargs map" } else { "" };
        return Err(Diagnostic::error(format!(
            "task `{}` takes {} argument(s) after the handle, but job `{}` passes {given}{kwargs}",
            task,
            takes.join(" or "),
            job.name
        ))
        .at(job.task_at.clone())
        .help("a task is called as f(ssh, args..., kwargs) — kwargs only when the job has them or the function takes one more parameter"));
    };
    Ok(TaskCall { module: Arc::clone(module), function: function.clone(), pass_kwargs })
}

#[cfg(test)]
mod tests {
    use crate::snapshot::Snapshot;

    /// A configuration whose task imports a chain of `depth` modules.
    fn chain(depth: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("loom.yaml", "nodesfile: nodes.yaml\njobspath: jobs\nlisten: off\n");
        write("nodes.yaml", "local:\n  local: true\n");
        write("jobs/a.yaml", "jobs:\n  a:\n    task: site.m0.apply\n    targets: [local]\n");
        for level in 0..depth {
            let import = format!("import \"site/m{}\" as next;\nfn f() {{ next::f() }}\n", level + 1);
            write(&format!("tasks/site/m{level}.rhai"), &format!("{import}fn apply(ssh) {{ }}\n"));
        }
        write(&format!("tasks/site/m{depth}.rhai"), "fn f() { 1 }\n");
        dir
    }

    #[test]
    fn deep_and_too_deep_imports_load_on_a_reload_threads_stack() {
        for (depth, ok) in [(super::engine::MAX_IMPORT_DEPTH, true), (super::engine::MAX_IMPORT_DEPTH + 1, false)] {
            let dir = chain(depth);
            let path = dir.path().join("loom.yaml");
            // The 2 MiB of a tokio blocking thread, where a reload runs.
            let errors = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let (_, diagnostics) = Snapshot::load(&path);
                    diagnostics.iter().filter(|d| d.is_error()).map(|d| d.one_line()).collect::<Vec<_>>()
                })
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(errors.is_empty(), ok, "depth {depth}: {errors:?}");
            if !ok {
                assert!(errors[0].contains("imports nest deeper than"), "{errors:?}");
            }
        }
    }
}
