//! The Rhai engine tasks run in: sandbox, limits, module lookup, output capture.
//!
//! Rhai has no file or process access of its own; `eval` is disabled; the only door
//! out is the handle. Each task call is bounded by `task_max_operations` and by
//! `task_max_time` (checked while the script runs; time spent waiting on a remote
//! command is bounded by the runner's timeouts instead). A reached limit stops the
//! script through Rhai's debugger hook at the next loop body or function entry, so the
//! error names that line and the innermost function; checking those break points at
//! every node is what the limits cost (`benches/scripts.rs`). Evaluation is synchronous:
//! callers run it on the script threads of `scripts`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rhai::debugger::{BreakPoint, DebuggerCommand, DebuggerEvent};
use rhai::module_resolvers::ModuleResolver;
use rhai::{AST, ASTNode, Dynamic, Engine, EvalAltResult, Module, Position, Scope, Shared, Stmt};
use tokio_util::sync::CancellationToken;

use super::handle::{self, Output};
use super::stdlib;
use crate::config::{Settings, read_text};

/// Where a module's text came from.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    File(PathBuf),
    Stdlib(&'static str),
}

impl Origin {
    /// The path errors point at: the file, or where the bundled module lives in the source tree.
    pub(crate) fn path(&self) -> PathBuf {
        match self {
            Origin::File(path) => path.clone(),
            Origin::Stdlib(module) => PathBuf::from(format!("stdlib/{module}.rhai")),
        }
    }

    pub(crate) fn display(&self) -> String {
        match self {
            Origin::File(path) => path.display().to_string(),
            Origin::Stdlib(module) => format!("stdlib/{module}.rhai (bundled)"),
        }
    }
}

/// Finds module `a/b` as `a/b.rhai` in each tasks folder, then in the stdlib.
/// A module file that is there but cannot be read (a FIFO, too large, no
/// permission) is an error naming it, never silently passed over for the stdlib's.
///
/// `module` must be a module path (`a/b`, each part letters, digits and `_`): it can
/// only name a file inside a tasks folder, never `../x` or `/etc/x`.
pub(crate) fn find_module(taskspath: &[PathBuf], module: &str) -> Result<Option<(Origin, String)>, String> {
    let part = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !module.split('/').all(part) {
        return Err(format!(
            "`{module}` is not a module path: modules are named like `a.b` (a/b.rhai), found only in the taskspath folders and the bundled stdlib"
        ));
    }
    for folder in taskspath {
        let path = folder.join(format!("{module}.rhai"));
        match read_text(&path) {
            Ok(text) => return Ok(Some((Origin::File(path), text))),
            Err(err) if err.is_absent() => {}
            Err(err) => return Err(format!("failed to read task module {}: {err}", path.display())),
        }
    }
    Ok(stdlib::find(module).map(|text| (Origin::Stdlib(module_name(module)), text.to_string())))
}

fn module_name(module: &str) -> &'static str {
    stdlib::MODULES
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(name, _)| *name)
        .expect("only called for bundled modules")
}

/// What the current thread's task call is, for print/debug and the limits.
struct CallContext {
    output: Arc<Output>,
    deadline: Instant,
    cancel: CancellationToken,
    stop_points: Arc<[BreakPoint]>,
}

thread_local! {
    static CURRENT: RefCell<Option<CallContext>> = const { RefCell::new(None) };
    /// A limit reached and the operation count it was reached at, until the
    /// debugger hook stops the script at the node being evaluated.
    static STOPPING: Cell<Option<(&'static str, u64)>> = const { Cell::new(None) };
}

/// Marks the current thread as running a task call until the guard drops.
pub(crate) struct CallGuard;

impl CallGuard {
    pub(crate) fn enter(
        output: Arc<Output>,
        deadline: Instant,
        cancel: CancellationToken,
        stop_points: Arc<[BreakPoint]>,
    ) -> CallGuard {
        CURRENT.with(|c| *c.borrow_mut() = Some(CallContext { output, deadline, cancel, stop_points }));
        STOPPING.set(None);
        CallGuard
    }

    /// The limit that stopped this call (`TIME_UP` or `OPS_UP`), even if the script
    /// caught the stop with `try` and returned.
    pub(crate) fn stopped_by(&self) -> Option<&'static str> {
        STOPPING.get().map(|(token, _)| token)
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
        STOPPING.set(None);
    }
}

/// The token a script is terminated with when its time is up.
pub(crate) const TIME_UP: &str = "loom: task_max_time reached";
/// The token a script is terminated with when it has used up `task_max_operations`.
pub(crate) const OPS_UP: &str = "loom: task_max_operations reached";
/// Operations a reached limit waits for a stop point before it stops the script without
/// a position (a node-less `loop {}` and modules imported by an imported module have none).
const GRACE_OPERATIONS: u64 = 1 << 16;
/// The token a script is terminated with when its node task was cancelled.
pub(crate) const CANCELLED: &str = "loom: cancelled";

/// The error a handle method returns once its task has been cancelled.
pub(crate) fn cancelled() -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(Dynamic::from(CANCELLED), Position::NONE))
}

pub(crate) fn build(settings: &Settings) -> Engine {
    let mut engine = Engine::new();
    engine.disable_symbol("eval");
    // Rhai's own limit would stop the script with a system error, whose position Rhai
    // replaces with the call site at every function return: the limit is kept here.
    engine.set_max_operations(0);
    engine.set_max_call_levels(64);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_string_size(64 << 20);
    engine.set_max_array_size(1 << 20);
    engine.set_max_map_size(1 << 20);
    engine.set_max_modules(256);
    let max_operations = settings.task_max_operations;
    engine.on_progress(move |ops| {
        if let Some((token, at)) = STOPPING.get() {
            if ops > at {
                return (ops > at + GRACE_OPERATIONS).then(|| Dynamic::from(token));
            }
            // A new evaluation on this thread (counts start again) outside a task call.
            STOPPING.set(None);
        }
        if ops > max_operations {
            STOPPING.set(Some((OPS_UP, ops)));
            return None;
        }
        // Reading the clock on every operation would halve the speed of scripts.
        if ops % 1024 != 0 {
            return None;
        }
        super::scripts::computing();
        CURRENT.with(|c| match &*c.borrow() {
            Some(call) if call.cancel.is_cancelled() => Some(Dynamic::from(CANCELLED)),
            Some(call) if Instant::now() >= call.deadline => {
                STOPPING.set(Some((TIME_UP, ops)));
                None
            }
            _ => None,
        })
    });
    // Rhai calls this hook at the call's stop points (`stop_points`: loop bodies and
    // function entries, which a long-running script keeps passing) and compares the
    // (few) points at every other node. A reached limit stops the script there
    // as a runtime error, which Rhai wraps at each function return (`ErrorInFunctionCall`)
    // instead of overwriting its position, so the error names the line, column and
    // innermost function.
    #[allow(deprecated)] // Rhai marks the debugger API volatile, not deprecated.
    engine.register_debugger(
        |_, mut debugger| {
            CURRENT.with(|c| {
                if let Some(call) = &*c.borrow() {
                    debugger.break_points_mut().extend(call.stop_points.iter().cloned());
                }
            });
            debugger
        },
        |_, event, node, _, _| match (event, STOPPING.get()) {
            (DebuggerEvent::BreakPoint(_), Some((token, _))) => {
                Err(Box::new(EvalAltResult::ErrorRuntime(token.into(), node.position())))
            }
            _ => Ok(DebuggerCommand::Continue),
        },
    );
    engine.on_print(|text| {
        CURRENT.with(|c| {
            if let Some(call) = &*c.borrow() {
                call.output.append(&format!("{text}\n"));
            }
        });
        tracing::info!(target: "loom::task", "{text}");
    });
    engine.on_debug(|text, source, pos| {
        let at = source.map(|s| format!("{s}:{pos}")).unwrap_or_else(|| pos.to_string());
        tracing::debug!(target: "loom::task", "{at}: {text}");
    });
    handle::register(&mut engine);
    engine
}

/// The engine tasks run in, with no limit on operations: for `benches/scripts.rs`, not an API.
#[doc(hidden)]
pub fn bench_engine() -> Engine {
    let mut settings = Settings::defaults(std::path::Path::new("."));
    settings.task_max_operations = u64::MAX;
    build(&settings)
}

/// Evaluates `ast` as a task call does (its stop points set): for `benches/scripts.rs`.
#[doc(hidden)]
pub fn bench_eval(engine: &Engine, ast: &AST) -> Result<Dynamic, Box<EvalAltResult>> {
    let deadline = Instant::now() + std::time::Duration::from_secs(3600);
    let _guard = CallGuard::enter(Arc::new(Output::new(1 << 20)), deadline, CancellationToken::new(), stop_points(ast));
    engine.eval_ast(ast)
}

/// Where a running script of `ast` can be stopped at a known place: the first statement
/// of every loop body and the start of every function, in it and in the modules it imports.
pub(crate) fn stop_points(ast: &AST) -> Arc<[BreakPoint]> {
    fn point(source: Option<&str>, pos: Position) -> BreakPoint {
        BreakPoint::AtPosition { source: source.map(Into::into), pos, enabled: true }
    }
    fn collect(source: Option<&str>, ast: &AST, module: &Module, points: &mut Vec<BreakPoint>) {
        // Rhai visits a function's body start as a node each time it enters the function.
        for (.., f) in module.iter_script_fn_info() {
            points.push(point(source, f.body.start_position()));
        }
        ast.walk(&mut |nodes: &[ASTNode]| {
            let (body, condition) = match nodes.last() {
                Some(ASTNode::Stmt(Stmt::While(x, _) | Stmt::Do(x, ..))) => (Some(&x.body), Some(&x.expr)),
                Some(ASTNode::Stmt(Stmt::For(x, _))) => (Some(&x.2.body), None),
                _ => (None, None),
            };
            match (body.and_then(|b| b.statements().first()), condition) {
                (Some(first), _) => points.push(point(source, first.position())),
                // An empty body: the condition is what the loop keeps evaluating.
                (None, Some(condition)) if !condition.is_constant() => points.push(point(source, condition.position())),
                _ => {}
            }
            true
        });
    }
    let mut points = Vec::new();
    collect(ast.source(), ast, ast.shared_lib(), &mut points);
    // The modules it imports, and theirs (a module's own imports are its sub-modules).
    let mut modules: Vec<Shared<Module>> =
        ast.resolver().map(|r| r.iter().map(|(_, m)| m.clone()).collect()).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    while let Some(module) = modules.pop() {
        if !seen.insert(Shared::as_ptr(&module)) {
            continue;
        }
        let functions = AST::new(Vec::new(), module.clone());
        collect(module.id(), &functions, &module, &mut points);
        modules.extend(module.iter_sub_modules().map(|(_, m)| m.clone()));
    }
    points.into()
}

/// Loops that can only end by a limit: `loop {}` and `while true {}` with an empty body
/// (nothing in them can `break`), by position. Such a loop evaluates no node Rhai's
/// debugger sees, so a limit could not name its line at run time: `loom check` does.
pub(crate) fn endless_loops(ast: &AST) -> Vec<Position> {
    let mut found = Vec::new();
    ast.walk(&mut |nodes: &[ASTNode]| {
        if let Some(ASTNode::Stmt(stmt @ Stmt::While(x, _))) = nodes.last()
            && x.body.is_empty()
            && matches!(x.expr, rhai::Expr::Unit(..) | rhai::Expr::BoolConstant(true, ..))
        {
            found.push(stmt.position());
        }
        true
    });
    found
}

/// Lets `import "a/b" as b;` in task modules find modules while a catalog is
/// built; what it read is handed back so the catalog can tell when it changed.
pub(crate) fn allow_imports(engine: &mut Engine, settings: &Settings) -> Arc<Mutex<HashMap<String, String>>> {
    let texts = Arc::new(Mutex::new(HashMap::new()));
    let cache = Mutex::new(HashMap::new());
    let resolver = Resolver {
        taskspath: settings.taskspath.clone(),
        cache,
        texts: Arc::clone(&texts),
        loading: Mutex::new(Vec::new()),
    };
    engine.set_module_resolver(resolver);
    texts
}

/// Once every module is compiled, with its imports inside (`compile_into_self_contained`):
/// a running task reads no module from disk, so a fire keeps the code it started with.
pub(crate) fn forbid_imports(engine: &mut Engine) {
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
}

/// `import "a/b" as b;` (or `"a.b"`) inside a task module: the same lookup as task paths.
struct Resolver {
    taskspath: Vec<PathBuf>,
    cache: Mutex<HashMap<String, Shared<Module>>>,
    /// The text of every module read, by module path.
    texts: Arc<Mutex<HashMap<String, String>>>,
    /// The imports being resolved, outermost first: a module evaluates its own
    /// imports while it is loaded, so a cycle would recurse until the stack ends.
    loading: Mutex<Vec<String>>,
}

/// How many imports deep modules may go (each level is a nested evaluation).
pub(crate) const MAX_IMPORT_DEPTH: usize = 16;

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let key = path.strip_suffix(".rhai").unwrap_or(path).replace('.', "/");
        if let Some(module) = self.cache.lock().expect("module cache").get(&key) {
            return Ok(module.clone());
        }
        let (origin, text) = match find_module(&self.taskspath, &key) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos))),
            Err(why) => return Err(Box::new(EvalAltResult::ErrorRuntime(why.into(), pos))),
        };
        self.texts.lock().expect("module texts").insert(key.clone(), text.clone());
        {
            let mut loading = self.loading.lock().expect("imports being loaded");
            let refuse = if loading.contains(&key) {
                Some(format!("import cycle: {} → {key}", loading.join(" → ")))
            } else if loading.len() >= MAX_IMPORT_DEPTH {
                Some(format!("imports nest deeper than {MAX_IMPORT_DEPTH} modules: {} → {key}", loading.join(" → ")))
            } else {
                None
            };
            if let Some(why) = refuse {
                return Err(Box::new(EvalAltResult::ErrorRuntime(why.into(), pos)));
            }
            loading.push(key.clone());
        }
        let evaluated: Result<Module, Box<EvalAltResult>> = engine
            .compile(text)
            .map_err(|e| EvalAltResult::ErrorInModule(origin.display(), e.into(), pos).into())
            .and_then(|mut ast| {
                ast.set_source(origin.display());
                Module::eval_ast_as_new(Scope::new(), &ast, engine)
                    .map_err(|e| EvalAltResult::ErrorInModule(origin.display(), e, pos).into())
            });
        self.loading.lock().expect("imports being loaded").pop();
        let module = evaluated?;
        let module: Shared<Module> = module.into();
        self.cache.lock().expect("module cache").insert(key, module.clone());
        Ok(module)
    }
}
