//! The daemon: load a snapshot, sleep until the next fire, run it, repeat.
//!
//! The loop selects over the next due instant and the shutdown signal; there is no
//! polling. Fires run as their own tasks, so a slow fire never delays the next one.
//! On shutdown no new fire starts and running fires are awaited.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Diagnostic;
use crate::runner::{Fire, Runner, Trigger};
use crate::schedule::Timeline;
use crate::snapshot::Snapshot;
use crate::ssh::Pool;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the configuration has {} error(s); nothing was started", .0.iter().filter(|d| d.is_error()).count())]
    InvalidConfig(Vec<Diagnostic>),
}

/// A fire more than this late (a suspended host, a stopped process) is dropped
/// instead of being run in a burst with all the others missed meanwhile.
const MISSED_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

pub async fn run(config_path: PathBuf, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let (snapshot, diagnostics) = Snapshot::load(&config_path);
    for warning in diagnostics.iter().filter(|d| !d.is_error()) {
        tracing::warn!("{}", warning.one_line());
    }
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(DaemonError::InvalidConfig(diagnostics));
    }
    let snapshot = Arc::new(snapshot);
    let settings = &snapshot.config.settings;
    let pool = Pool::new(settings.ssh.clone(), settings.output_limit);
    let runner = Arc::new(Runner::new(settings.max_workers, Arc::new(pool)));
    let mut timeline = Timeline::new();
    let mut fires = JoinSet::new();

    let now = Utc::now();
    for job in snapshot.config.jobs.values() {
        match &job.schedule {
            Some(schedule) if schedule.is_reboot() => {
                let fire = Fire {
                    job: job.name.clone(),
                    scheduled: now,
                    trigger: Trigger::Reboot,
                };
                fires.spawn(start_fire(&snapshot, &runner, fire));
            }
            Some(schedule) => timeline.plan(&job.name, schedule, now),
            None => {}
        }
    }
    tracing::info!(
        config = %config_path.display(),
        jobs = snapshot.config.jobs.len(),
        nodes = snapshot.config.nodes.len(),
        next = ?timeline.next_instant(),
        "loom started"
    );

    loop {
        let wait = timeline
            .next_instant()
            .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(86_400));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {
                let now = Utc::now();
                for (at, name) in timeline.take_due(now) {
                    let Some(job) = snapshot.config.jobs.get(&name) else { continue };
                    let Some(schedule) = &job.schedule else { continue };
                    if now - at > MISSED_AFTER {
                        tracing::warn!(job = %name, scheduled = %at, "fire missed (the host was asleep or stalled); skipping to the next one");
                        timeline.plan(&name, schedule, now);
                        continue;
                    }
                    timeline.plan(&name, schedule, at);
                    let fire = Fire { job: name, scheduled: at, trigger: Trigger::Schedule };
                    fires.spawn(start_fire(&snapshot, &runner, fire));
                }
            }
            Some(_) = fires.join_next(), if !fires.is_empty() => {}
        }
    }

    if !fires.is_empty() {
        tracing::info!(
            running = fires.len(),
            "stopping: waiting for running fires to finish"
        );
    }
    while fires.join_next().await.is_some() {}
    runner.pool().close_all();
    tracing::info!("loom stopped");
    Ok(())
}

fn start_fire(
    snapshot: &Arc<Snapshot>,
    runner: &Arc<Runner>,
    fire: Fire,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let snapshot = Arc::clone(snapshot);
    let runner = Arc::clone(runner);
    async move {
        let Some(job) = snapshot.config.jobs.get(&fire.job) else {
            return;
        };
        let nodes = job
            .targets
            .iter()
            .filter_map(|name| snapshot.config.nodes.get(name).cloned())
            .collect();
        let lag = (Utc::now() - fire.scheduled)
            .num_microseconds()
            .unwrap_or(i64::MAX) as f64
            / 1000.0;
        tracing::debug!(job = %fire.job, lag_ms = lag, "fire due");
        let clock = std::time::Instant::now();
        let report = runner.run(Arc::clone(&snapshot), fire, nodes, |_| {}).await;
        tracing::info!(
            job = %report.fire.job,
            seconds = clock.elapsed().as_secs_f64(),
            ok = report.results.len() - report.failed(),
            failed = report.failed(),
            "fire finished"
        );
    }
}
