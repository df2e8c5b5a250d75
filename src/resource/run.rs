//! Running a job's resources on one node: facts, `when`, check, apply, handlers.
//!
//! Synchronous (it runs on a script thread inside the task call, under its limits).
//! The order is the job's; the first failure marks the node's later resources
//! `skipped` and runs no handler. In check mode `apply` is never called. Outcomes
//! are decided here only; storing and showing them is the runner's and the CLI's.

use rhai::{Array, CallFnOptions, Dynamic, Engine, EvalAltResult, Map, Scope};

use super::plan::{Plan, Step};
use crate::config::Content;
use crate::store::{FieldChange, ResourceOutcome, ResourceStatus};
use crate::task::handle::{Output, Ssh};

/// What a node's resources run with.
pub(crate) struct Context<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) ssh: &'a Ssh,
    pub(crate) output: &'a Output,
    pub(crate) job: &'a str,
    pub(crate) args: &'a [Dynamic],
    pub(crate) kwargs: Option<&'a Map>,
    /// Check mode: report what would change, change nothing.
    pub(crate) check: bool,
}

/// Why a node's resources stopped.
pub(crate) struct Failure {
    /// The resource (or `facts`) that failed.
    pub(crate) label: String,
    pub(crate) message: String,
    /// The script error, when a script call failed (a limit or a cancellation shows there).
    pub(crate) error: Option<Box<EvalAltResult>>,
}

/// Runs `plan` on the context's node; the outcomes of every resource and queued
/// handler, in order, and the first failure.
pub(crate) fn run(context: &Context<'_>, plan: &Plan) -> (Vec<ResourceOutcome>, Option<Failure>) {
    let mut outcomes = Vec::new();
    let facts = match context.ssh.facts() {
        Ok(facts) => facts,
        Err(err) => {
            let message = format!("failed to gather facts: {err}");
            for step in &plan.steps {
                outcomes.push(outcome(step, ResourceStatus::Skipped, Some("the node's facts could not be gathered")));
            }
            return (outcomes, Some(Failure { label: "facts".into(), message, error: Some(err) }));
        }
    };
    // Each resource's `want` first (its `when` and content), then every probe in one
    // command per sudo mode, then check and apply in order.
    let mut wants: Vec<Result<Option<Map>, Failure>> = plan.steps.iter().map(|s| want_of(context, s, &facts)).collect();
    probe_all(context, &plan.steps, &mut wants);
    let mut failure: Option<Failure> = None;
    let mut queued: Vec<(String, String)> = Vec::new();
    // A probe read the node before anything was applied: after a change, checks read afresh.
    let mut applied = false;
    for (step, want) in plan.steps.iter().zip(wants) {
        if let Some(failed) = &failure {
            let reason = format!("an earlier resource failed: {}", failed.label);
            outcomes.push(report(context, outcome(step, ResourceStatus::Skipped, Some(&reason))));
            continue;
        }
        let result = match want {
            Ok(None) => Ok(outcome(step, ResourceStatus::Skipped, Some("`when` is false"))),
            Ok(Some(mut want)) => {
                if applied {
                    want.remove(PROBED);
                }
                converge(context, step, want)
            }
            Err(failed) => Err(failed),
        };
        match result {
            Ok(result) => {
                // In check mode too: the handler is reported as one that would run.
                if result.status == ResourceStatus::Changed {
                    applied |= !context.check;
                    for name in &step.notify {
                        if !queued.iter().any(|(n, _)| n == name) {
                            queued.push((name.clone(), step.label.clone()));
                        }
                    }
                }
                outcomes.push(report(context, result));
            }
            Err(failed) => {
                let mut result = outcome(step, ResourceStatus::Failed, Some(&failed.message));
                result.reason = Some(failed.message.clone());
                outcomes.push(report(context, result));
                failure = Some(failed);
            }
        }
    }
    for (name, step) in &plan.handlers {
        let Some((_, by)) = queued.iter().find(|(n, _)| n == name) else { continue };
        let mut result = if let Some(failed) = &failure {
            let reason = format!("an earlier resource failed: {}", failed.label);
            outcome(step, ResourceStatus::Skipped, Some(&reason))
        } else if context.check {
            outcome(step, ResourceStatus::Skipped, Some(&format!("check mode: would run (notified by {by})")))
        } else {
            let result = match want_of(context, step, &facts) {
                Ok(None) => Ok(outcome(step, ResourceStatus::Skipped, Some("`when` is false"))),
                Ok(Some(want)) => converge(context, step, want),
                Err(failed) => Err(failed),
            };
            match result {
                Ok(result) => result,
                Err(failed) => {
                    let result = outcome(step, ResourceStatus::Failed, Some(&failed.message));
                    failure = Some(failed);
                    result
                }
            }
        };
        result.handler = true;
        result.resource = format!("{} (handler {name})", result.resource);
        outcomes.push(report(context, result));
    }
    (outcomes, failure)
}

/// An outcome with no changes.
fn outcome(step: &Step, status: ResourceStatus, reason: Option<&str>) -> ResourceOutcome {
    ResourceOutcome {
        resource: step.label.clone(),
        status,
        changes: Vec::new(),
        diff: None,
        reason: reason.map(str::to_string),
        handler: false,
        sensitive: step.sensitive,
    }
}

/// Adds the outcome's line to the node's output (what `loom logs` and job logs show).
fn report(context: &Context<'_>, outcome: ResourceOutcome) -> ResourceOutcome {
    let mut line = format!("[{}] {}", outcome.status, outcome.resource);
    if !outcome.changes.is_empty() {
        let fields: Vec<&str> = outcome.changes.iter().map(|c| c.field.as_str()).collect();
        line.push_str(&format!(": {}", fields.join(", ")));
    }
    if let Some(reason) = &outcome.reason {
        line.push_str(&format!(" ({reason})"));
    }
    context.output.append(&format!("{line}\n"));
    outcome
}

/// The key of `want` that carries a resource's probe output to its `check`.
pub(crate) const PROBED: &str = "probed";

/// What the type receives: the declared fields with the content read or rendered;
/// `None` when `when` is false.
fn want_of(context: &Context<'_>, step: &Step, facts: &Map) -> Result<Option<Map>, Failure> {
    let fail =
        |message: String, error: Option<Box<EvalAltResult>>| Failure { label: step.label.clone(), message, error };
    if let Some(when) = &step.when {
        let mut scope = scope(context, facts);
        match context.engine.eval_ast_with_scope::<Dynamic>(&mut scope, when) {
            Ok(value) => match value.as_bool() {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(kind) => return Err(fail(format!("`when` gave {kind}, not true or false"), None)),
            },
            Err(err) => return Err(fail(format!("`when` failed: {}", plain(&err)), Some(err))),
        }
    }
    let mut want = step.want.clone();
    if let Some(content) = &step.content {
        let text = match content {
            Content::Source(path) => match std::fs::read(path) {
                Ok(bytes) => String::from_utf8(bytes)
                    .map_err(|_| fail(format!("source {} is not UTF-8 text", path.display()), None))?,
                Err(err) => return Err(fail(format!("failed to read source {}: {err}", path.display()), None)),
            },
            Content::Template { path, text } => {
                render(context, facts, &path.display().to_string(), text).map_err(|why| fail(why, None))?
            }
        };
        want.insert("content".into(), text.into());
    }
    Ok(Some(want))
}

/// Runs the probes (`fn probe(want)`, optional) of every resource in one command per
/// sudo mode, and hands each output to its `check` as `want.probed`. A probe that
/// fails, or a batch that cannot run, leaves its resources to read the node themselves.
fn probe_all(context: &Context<'_>, steps: &[Step], wants: &mut [Result<Option<Map>, Failure>]) {
    for as_root in [false, true] {
        let mut probes: Vec<(usize, String)> = Vec::new();
        for (index, (step, want)) in steps.iter().zip(wants.iter()).enumerate() {
            let Ok(Some(want)) = want else { continue };
            if step.sudo != as_root || !step.module.functions.get("probe").is_some_and(|a| a.contains(&1)) {
                continue;
            }
            if let Ok(command) = call(context, step, "probe", vec![Dynamic::from_map(want.clone())])
                && let Ok(command) = command.into_string()
            {
                probes.push((index, command));
            }
        }
        if probes.len() < 2 {
            // One probe costs what its own check costs.
            continue;
        }
        let mark = format!(
            "loom-probe-{:x}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        );
        let mut script = String::new();
        for (index, command) in &probes {
            script.push_str(&format!(
                "printf '\\n%s %s\\n' {mark} {index}; ( {command}\n) </dev/null 2>/dev/null; printf '\\n%s end %s %s\\n' {mark} {index} \"$?\"\n"
            ));
        }
        let sudo = if as_root { " (sudo)" } else { "" };
        context.output.append(&format!("$ (one command reads the state of {} resources){sudo}\n", probes.len()));
        let ssh = context.ssh.for_resource(as_root, true);
        let Ok(result) = ssh.run_quietly(&script) else { continue };
        for (index, _) in &probes {
            if let (Some(output), Ok(Some(want))) = (probed(&result, &mark, *index), &mut wants[*index]) {
                want.insert(PROBED.into(), output.into());
            }
        }
    }
}

/// Probe `index`'s output in a batch's stdout, if it exited 0.
fn probed(stdout: &str, mark: &str, index: usize) -> Option<String> {
    let start = format!("\n{mark} {index}\n");
    let end = format!("\n{mark} end {index} ");
    let from = stdout.find(&start)? + start.len();
    let to = from + stdout[from..].find(&end)?;
    let code = stdout[to + end.len()..].split('\n').next()?;
    (code == "0").then(|| stdout[from..to].to_string())
}

/// `check`, then (unless in check mode, and only if something differs) `apply`.
fn converge(context: &Context<'_>, step: &Step, want: Map) -> Result<ResourceOutcome, Failure> {
    let fail =
        |message: String, error: Option<Box<EvalAltResult>>| Failure { label: step.label.clone(), message, error };
    let ssh = Dynamic::from(context.ssh.for_resource(step.sudo, step.sensitive));
    let want = Dynamic::from_map(want);
    let plan = call(context, step, "check", vec![ssh.clone(), want.clone()]).map_err(|err| {
        let message = crate::task::catalog::describe(&err, &step.module.source, "check");
        fail(message, Some(err))
    })?;
    let Some(plan_map) = plan.clone().try_cast::<Map>() else {
        return Err(fail(format!("fn check of {} returned {}, not a map", step.module.source, plan.type_name()), None));
    };
    if !plan_map.get("changes").is_some_and(|c| c.is_array()) {
        let why = format!("fn check of {} returned a map without a `changes` list", step.module.source);
        return Err(fail(why, None));
    }
    let changes = changes_of(&plan_map, step.sensitive);
    if changes.is_empty() {
        return Ok(outcome(step, ResourceStatus::Unchanged, None));
    }
    let diff = match plan_map.get("diff").map(|d| d.to_string()) {
        Some(diff) if !diff.is_empty() && !step.sensitive => Some(diff),
        _ => None,
    };
    if !context.check {
        let _ = call(context, step, "apply", vec![ssh, want, plan]).map_err(|err| {
            let message = crate::task::catalog::describe(&err, &step.module.source, "apply");
            fail(message, Some(err))
        })?;
    }
    Ok(ResourceOutcome { changes, diff, ..outcome(step, ResourceStatus::Changed, None) })
}

fn call(context: &Context<'_>, step: &Step, function: &str, args: Vec<Dynamic>) -> Result<Dynamic, Box<EvalAltResult>> {
    context.engine.call_fn_with_options::<Dynamic>(
        CallFnOptions::new(),
        &mut Scope::new(),
        &step.module.ast,
        function,
        args,
    )
}

/// What `when` sees: `facts`, `args`, `kwargs`, `node`.
fn scope<'s>(context: &Context<'_>, facts: &Map) -> Scope<'s> {
    let mut scope = Scope::new();
    scope.push_constant("facts", facts.clone());
    scope.push_constant("args", context.args.to_vec());
    scope.push_constant("kwargs", context.kwargs.cloned().unwrap_or_default());
    scope.push_constant("node", context.ssh.node_name().to_string());
    scope
}

/// Renders a template with `facts`, `args`, `kwargs`, `node` and `job`; an undefined
/// variable is an error, which names the template's line.
fn render(context: &Context<'_>, facts: &Map, name: &str, text: &str) -> Result<String, String> {
    let json = |value: Dynamic| -> serde_json::Value { rhai::serde::from_dynamic(&value).unwrap_or_default() };
    let args: Array = context.args.to_vec();
    let data = serde_json::json!({
        "facts": json(Dynamic::from_map(facts.clone())),
        "args": json(Dynamic::from_array(args)),
        "kwargs": json(Dynamic::from_map(context.kwargs.cloned().unwrap_or_default())),
        "node": context.ssh.node_name(),
        "job": context.job,
    });
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.render_named_str(name, text, data).map_err(|err| {
        let line = err.line().map(|l| format!(":{l}")).unwrap_or_default();
        let detail = err.detail().map(|d| format!(": {d}")).unwrap_or_default();
        format!("template {name}{line} does not render: {}{detail}", err.kind())
    })
}

/// The `changes` a check returned, as text; values hidden for a sensitive resource.
fn changes_of(plan: &Map, sensitive: bool) -> Vec<FieldChange> {
    let Some(list) = plan.get("changes").and_then(|c| c.clone().try_cast::<Array>()) else { return Vec::new() };
    let text = |value: Option<&Dynamic>| match value {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) => Some(v.to_string()),
    };
    list.into_iter()
        .filter_map(|item| item.try_cast::<Map>())
        .map(|change| FieldChange {
            field: change.get("field").map(|f| f.to_string()).unwrap_or_default(),
            before: if sensitive { None } else { text(change.get("before")) },
            after: if sensitive { None } else { text(change.get("after")) },
        })
        .collect()
}

/// An error's message without Rhai's position suffix.
fn plain(err: &EvalAltResult) -> String {
    match err.unwrap_inner() {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_batch_is_split_into_each_probes_output_and_failed_probes_are_left_out() {
        let stdout = "\nM 0\nfile root root 644 abc\n\nM end 0 0\n\nM 3\nno newline\nM end 3 0\n\nM 5\n\nM end 5 1\n";
        assert_eq!(super::probed(stdout, "M", 0).as_deref(), Some("file root root 644 abc\n"));
        assert_eq!(super::probed(stdout, "M", 3).as_deref(), Some("no newline"));
        assert_eq!(super::probed(stdout, "M", 5), None);
        assert_eq!(super::probed(stdout, "M", 7), None);
    }
}
