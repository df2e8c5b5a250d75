//! How fast the web interface shows a big history: a store of 100,000 fires of
//! 1,000 jobs (three nodes each, 300,000 node results), measured in Debian's
//! Chromium (headless, as in the browser tests). Each figure is the time from the
//! start of a page load to the page marking its data as rendered
//! (`performance.mark('loom:rendered')`): fetching the page and its modules, the
//! API requests, and drawing. The peer is the same page on the same 1,000 jobs
//! with an empty history, loaded in the same run: the ratio is what the history
//! costs. The target is 200 ms. Prints a table; asserts nothing.
//!
//! `cargo bench --bench web`; `LOOM_BENCH_ROUNDS` loads per page (median; default 9).

#[path = "../tests/integration/harness/mod.rs"]
mod harness;

use harness::Workspace;
use harness::browser::Browser;

const JOBS: usize = 1_000;
const FIRES_PER_JOB: usize = 100;
const NODES: [&str; 3] = ["a", "b", "c"];

fn main() {
    let rounds: usize = std::env::var("LOOM_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(9);
    let nodes: String = NODES.iter().map(|n| format!("{n}:\n  local: true\n")).collect();
    let jobs: String = (0..JOBS)
        .map(|i| {
            format!(
                "  job-{i:04}:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"{} {} * * *\"\n    targets: [a, b, c]\n",
                i % 60,
                (i / 60) % 24
            )
        })
        .collect();
    let empty = Workspace::new("", &nodes);
    let full = Workspace::new("", &nodes);
    for ws in [&empty, &full] {
        ws.write("jobs/many.yaml", &format!("jobs:\n{jobs}"));
    }
    // The daemon creates and migrates the store; the history is written while it is stopped.
    let daemon = full.serve();
    daemon.wait_started();
    daemon.stop();
    let started = std::time::Instant::now();
    fill(&full.path("state.db"));
    println!("filled the store with {} fires in {:.1} s", JOBS * FIRES_PER_JOB, started.elapsed().as_secs_f64());

    let browser = Browser::start();
    let mut rows = Vec::new();
    for (label, ws) in [("empty history", &empty), ("100,000 fires", &full)] {
        let daemon = ws.serve();
        daemon.wait_started();
        let server = ws.server();
        for (page, fragment) in [("dashboard", "#/"), ("history", "#/jobs/job-0500"), ("jobs", "#/jobs")] {
            let mut times: Vec<f64> = (0..rounds)
                .map(|_| {
                    browser.step(async {
                        browser.open(&format!("{server}/{fragment}"), page).await;
                        let at = browser
                            .script("return performance.getEntriesByName('loom:rendered').at(-1).startTime")
                            .await;
                        at.as_f64().unwrap()
                    })
                })
                .collect();
            times.sort_by(f64::total_cmp);
            rows.push((page, label, times[times.len() / 2], times[times.len() - 1]));
        }
        daemon.stop();
    }
    println!(
        "\nweb interface, {JOBS} jobs × {} nodes, {rounds} loads per page (ms from navigation start)",
        NODES.len()
    );
    println!("{:<10} {:<14} {:>8} {:>8} {:>14}", "page", "store", "median", "max", "vs empty");
    for (page, label, median, max) in &rows {
        let peer = rows.iter().find(|(p, l, _, _)| p == page && *l == "empty history").map(|r| r.2).unwrap();
        println!("{page:<10} {label:<14} {median:>8.1} {max:>8.1} {:>13.2}x", median / peer);
    }
    println!("target: dashboard and history ≤ 200 ms on 100,000 fires");
}

/// Writes the history straight into the store: FIRES_PER_JOB fires a job, one an
/// hour back from now, every tenth failed on node `c`.
fn fill(path: &std::path::Path) {
    let mut db = rusqlite::Connection::open(path).unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut fire = tx
            .prepare(
                "INSERT INTO fires (job, scheduled, trigger, status, started, finished, nodes)
                 VALUES (?1, ?2, 'schedule', ?3, ?2, ?4, '[\"a\",\"b\",\"c\"]')",
            )
            .unwrap();
        let mut node = tx
            .prepare(
                "INSERT INTO node_results (fire_id, node, attempt, status, exit_code, started, duration_ms, error, output)
                 VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        // Oldest first, so fire numbers grow with time as the daemon's do.
        for back in (1..=FIRES_PER_JOB as i64).rev() {
            for job in 0..JOBS as i64 {
                let scheduled = now - back * 3_600_000 - job * 1_000;
                let failed = (back + job) % 10 == 0;
                let duration = 200 + (back * 37 + job * 11) % 1_800;
                let status = if failed { "failed" } else { "ok" };
                fire.execute(rusqlite::params![format!("job-{job:04}"), scheduled, status, scheduled + duration])
                    .unwrap();
                let id = tx.last_insert_rowid();
                for name in NODES {
                    let bad = failed && name == "c";
                    node.execute(rusqlite::params![
                        id,
                        name,
                        if bad { "failed" } else { "ok" },
                        if bad { 1 } else { 0 },
                        scheduled,
                        duration,
                        bad.then_some("`true` exited with code 1 on node `c`"),
                        "$ true\n",
                    ])
                    .unwrap();
                }
            }
        }
    }
    tx.commit().unwrap();
}
