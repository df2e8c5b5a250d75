//! What locating a stopped script costs: tight Rhai loops in Loom's task engine beside
//! the engine Loom used before (Rhai's own operation limit, no debugger hook; Rhai's
//! `debugging` feature is compiled into both, as one build has one set of features).
//! Prints seconds and the ratio of medians; asserts nothing.
//!
//! `nice -n 10 cargo bench --bench scripts`; `LOOM_BENCH_ITERATIONS` (default
//! 10,000,000) and `LOOM_BENCH_ROUNDS` (default 3) change its size.

use std::time::Instant;

use rhai::{Dynamic, Engine};

/// The engine before limits were located: Rhai stops the script itself.
fn before() -> Engine {
    let mut engine = Engine::new();
    engine.disable_symbol("eval");
    engine.set_max_operations(u64::MAX);
    engine.set_max_call_levels(64);
    engine.on_progress(|ops| {
        if ops % 1024 != 0 {
            return None;
        }
        // Loom's hook reads a thread-local and the clock here.
        std::hint::black_box(Instant::now());
        None::<Dynamic>
    });
    engine
}

fn seconds(run: impl Fn() -> Result<Dynamic, Box<rhai::EvalAltResult>>) -> f64 {
    let start = Instant::now();
    let _ = std::hint::black_box(run().expect("the benchmark script runs"));
    start.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let n: u64 = std::env::var("LOOM_BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let rounds: usize = std::env::var("LOOM_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let scripts = [
        ("arithmetic loop", n, format!("let s = 0; for i in 0..{n} {{ s += i * 3 % 7; }} s")),
        (
            "function calls",
            n / 10,
            format!("fn step(x, i) {{ x + i % 7 }} let s = 0; for i in 0..{} {{ s = step(s, i); }} s", n / 10),
        ),
    ];
    let (old, new) = (before(), loom::bench::bench_engine());
    println!("{:<16} {:>11}  {:<26} {:<26} {:>9}", "script", "iterations", "before (s)", "loom (s)", "loom/before");
    for (name, iterations, text) in scripts {
        let ast = new.compile(&text).expect("the benchmark script compiles");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        // Taking turns evens out a noisy, shared machine.
        for _ in 0..rounds {
            a.push(seconds(|| old.eval_ast(&ast)));
            b.push(seconds(|| loom::bench::bench_eval(&new, &ast)));
        }
        let show = |xs: &[f64]| xs.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" ");
        println!(
            "{name:<16} {iterations:>11}  {:<26} {:<26} {:>9.2}",
            show(&a),
            show(&b),
            median(b.clone()) / median(a.clone())
        );
    }
}
