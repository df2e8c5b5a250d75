//! A job's resources prepared to run: each type's module compiled, each declaration
//! checked against the type's schema and turned into the `want` map it receives.
//!
//! Done once per configuration (by the catalog, which owns compiling modules), so a
//! fire only evaluates. Every problem is a diagnostic at its `file:line:col`: an
//! unknown type, a module without the protocol's functions, fields that do not fit
//! the schema, a `validate` that throws, a `when` that does not compile.

use std::sync::Arc;

use rhai::{AST, CallFnOptions, Dynamic, Engine, Map, Scope};

use super::schema::Schema;
use crate::config::{At, Content, Diagnostic, Job, Location, Resource};
use crate::task::catalog::CompiledModule;

/// Finds and compiles a type's module: `Ok(None)` when there is none, `Err` when
/// it does not compile (reported by the callee).
pub(crate) type CompileType<'a> = dyn FnMut(&str, &Location) -> Result<Option<Arc<CompiledModule>>, ()> + 'a;

/// One resource (or handler) ready to run.
pub(crate) struct Step {
    pub(crate) label: String,
    pub(crate) module: Arc<CompiledModule>,
    /// The declared fields with defaults, as the type receives them (content added at run time).
    pub(crate) want: Map,
    pub(crate) content: Option<Content>,
    pub(crate) when: Option<AST>,
    pub(crate) notify: Vec<String>,
    pub(crate) sensitive: bool,
    pub(crate) sudo: bool,
}

/// A job's resources and handlers, in order.
pub(crate) struct Plan {
    pub(crate) steps: Vec<Step>,
    pub(crate) handlers: Vec<(String, Step)>,
}

impl Plan {
    /// Every module the plan calls, once each (for the script limits' stop points).
    pub(crate) fn modules(&self) -> Vec<Arc<CompiledModule>> {
        let mut modules: Vec<Arc<CompiledModule>> = Vec::new();
        for step in self.steps.iter().chain(self.handlers.iter().map(|(_, s)| s)) {
            if !modules.iter().any(|m| Arc::ptr_eq(m, &step.module)) {
                modules.push(Arc::clone(&step.module));
            }
        }
        modules
    }

    /// The module of the first step (or handler), as errors without a place name it.
    pub(crate) fn first_module(&self) -> Option<&Arc<CompiledModule>> {
        self.steps.iter().chain(self.handlers.iter().map(|(_, s)| s)).map(|step| &step.module).next()
    }
}

/// The module path of a resource type: `file` is `loom/resource/file`, `site.thing` is `site/thing`.
pub(crate) fn module_of(kind: &str) -> String {
    if kind.contains('.') { kind.replace('.', "/") } else { format!("loom/resource/{kind}") }
}

/// Prepares `job`'s resources; `None` (with diagnostics) when any is not valid.
/// `compile` finds and compiles a module (`None`: not found or does not compile,
/// which it reports itself except for "not found").
pub(crate) fn prepare(
    engine: &Engine,
    job: &Job,
    compile: &mut CompileType<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Plan> {
    let before = diagnostics.iter().filter(|d| d.is_error()).count();
    let mut steps = Vec::new();
    for resource in &job.resources {
        if let Some(step) = prepare_one(engine, job, resource, compile, diagnostics) {
            steps.push(step);
        }
    }
    let mut handlers = Vec::new();
    for (name, resource) in &job.handlers {
        if let Some(step) = prepare_one(engine, job, resource, compile, diagnostics) {
            handlers.push((name.value.clone(), step));
        }
    }
    let after = diagnostics.iter().filter(|d| d.is_error()).count();
    (after == before).then_some(Plan { steps, handlers })
}

fn prepare_one(
    engine: &Engine,
    job: &Job,
    resource: &Resource,
    compile: &mut CompileType<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Step> {
    let At { value: kind, at } = &resource.kind;
    let module_path = module_of(kind);
    let module = match compile(&module_path, at) {
        Ok(Some(module)) => module,
        Ok(None) => {
            diagnostics.push(
                Diagnostic::error(format!(
                    "unknown resource type `{kind}` in job `{}`: no module {module_path}.rhai",
                    job.name
                ))
                .at(at.clone())
                .help(format!(
                    "bundled types: {}; a type of your own is loom/resource/TYPE.rhai in a taskspath folder, or a dotted module path (loom.debian.apt_source)",
                    crate::task::stdlib::resource_types().join(", ")
                )),
            );
            return None;
        }
        Err(()) => return None,
    };
    for (function, arity) in [("fields", 0), ("check", 2), ("apply", 3)] {
        if !module.functions.get(function).is_some_and(|a| a.contains(&arity)) {
            diagnostics.push(
                Diagnostic::error(format!(
                    "resource type `{kind}` ({}) has no fn {function} with {arity} parameter(s), which the resource protocol needs",
                    module.source
                ))
                .at(at.clone())
                .help("a type exports fn fields(), fn check(ssh, want) and fn apply(ssh, want, plan)"),
            );
            return None;
        }
    }
    let fields = call(engine, &module, "fields", vec![]).and_then(|value| {
        let json: serde_json::Value = rhai::serde::from_dynamic(&value).map_err(|e| e.to_string())?;
        Schema::from_json(&json)
    });
    let schema = match fields {
        Ok(schema) => schema,
        Err(why) => {
            diagnostics.push(
                Diagnostic::error(format!("resource type `{kind}`: {why}")).at(at.clone()).help(module.source.clone()),
            );
            return None;
        }
    };
    let want = match schema.check(resource) {
        Ok(want) => want,
        Err(problems) => {
            diagnostics.extend(problems);
            return None;
        }
    };
    let want: Map = rhai::serde::to_dynamic(serde_json::Value::Object(want))
        .expect("JSON values convert to Rhai values")
        .cast::<Map>();
    // Both are reported when both are wrong.
    let mut valid = true;
    if module.functions.get("validate").is_some_and(|a| a.contains(&1)) {
        // Content from `source`/`template` is known only when the resource runs.
        if let Err(why) = call(engine, &module, "validate", vec![Dynamic::from_map(want.clone())]) {
            diagnostics.push(Diagnostic::error(format!("resource `{kind}`: {why}")).at(at.clone()));
            valid = false;
        }
    }
    let when = match &resource.when {
        None => None,
        Some(At { value: text, at }) => match engine.compile_expression(text) {
            Ok(ast) => Some(ast),
            Err(err) => {
                diagnostics.push(
                    Diagnostic::error(format!("`when` of resource `{kind}` is not a Rhai expression: {err}"))
                        .at(at.clone())
                        .help("e.g. when: 'facts.os_family == \"debian\"'; it sees facts, args, kwargs and node"),
                );
                valid = false;
                None
            }
        },
    };
    if !valid {
        return None;
    }
    Some(Step {
        label: resource.label(),
        module,
        want,
        content: resource.content.as_ref().map(|c| c.value.clone()),
        when,
        notify: resource.notify.iter().map(|n| n.value.clone()).collect(),
        sensitive: resource.sensitive,
        sudo: resource.sudo.unwrap_or(job.sudo),
    })
}

/// Calls a function of a type's module while the configuration is checked.
fn call(engine: &Engine, module: &CompiledModule, function: &str, args: Vec<Dynamic>) -> Result<Dynamic, String> {
    engine
        .call_fn_with_options::<Dynamic>(CallFnOptions::new(), &mut Scope::new(), &module.ast, function, args)
        .map_err(|err| crate::task::catalog::describe(&err, &module.source, function))
}

#[cfg(test)]
mod tests {
    #[test]
    fn types_name_their_modules() {
        assert_eq!(super::module_of("file"), "loom/resource/file");
        assert_eq!(super::module_of("site.thing"), "site/thing");
    }
}
