//! The daemon's Prometheus metrics: what is counted, under which names and labels,
//! and their text for `GET /metrics`.
//!
//! One `Metrics` per daemon, shared by the parts that see the events: the runner
//! (fires, node results, durations, lag), the daemon's loop (skipped, missed and
//! catch-up fires, reloads), the SSH pool (reconnects) and the store's writer (how
//! long a commit takes). Each part calls a method named after its domain event;
//! none of them knows Prometheus. This module does not serve anything (the API
//! does) and imports nothing of Loom's but plain values, so every layer may use it.
//!
//! Label cardinality is bounded: series carry the job (bounded by the configured
//! jobs; a job removed by a reload is forgotten with all its series) and a status or
//! reason from a fixed set; a `node` label only with `metrics: {per_node: true}`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How `/metrics` is served (the main file's `metrics:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Served without a token, even when the API has tokens.
    pub public: bool,
    /// Node results carry a `node` label (one series per job, node and status).
    pub per_node: bool,
}

/// The content type of `render`'s OpenMetrics 1.0 text (what Prometheus asks for).
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of `prometheus_text` (the classic format, for everyone else).
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// Which family a job's series is in, so a removed job's series can all be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Fires,
    NodeResults,
    Skipped,
    Missed,
    CatchUp,
    Duration,
    LastSuccess,
}

pub struct Metrics {
    registry: Registry,
    public: AtomicBool,
    per_node: AtomicBool,
    fires: Family<Labels, Counter>,
    node_results: Family<Labels, Counter>,
    skipped: Family<Labels, Counter>,
    missed: Family<Labels, Counter>,
    catch_up: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    last_success: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    lag: Histogram,
    running: Gauge,
    masters: Gauge,
    reconnects: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
    store_writes: Histogram,
    /// Every series with a `job` label, by job.
    series: Mutex<HashMap<String, HashSet<(Kind, Labels)>>>,
}

fn duration_histogram() -> Histogram {
    // 10 ms to about 44 min, by fours.
    Histogram::new(exponential_buckets(0.01, 4.0, 10))
}

impl Metrics {
    pub fn new(settings: MetricsSettings) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("loom"),
            public: AtomicBool::new(settings.public),
            per_node: AtomicBool::new(settings.per_node),
            fires: Family::default(),
            node_results: Family::default(),
            skipped: Family::default(),
            missed: Family::default(),
            catch_up: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            last_success: Family::default(),
            // 0.5 ms to about 8 s, by twos.
            lag: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            running: Gauge::default(),
            masters: Gauge::default(),
            reconnects: Family::default(),
            reloads: Family::default(),
            // 0.1 ms to about 6.6 s, by fours.
            store_writes: Histogram::new(exponential_buckets(0.0001, 4.0, 9)),
            series: Mutex::new(HashMap::new()),
        };
        let registry = &mut metrics.registry;
        registry.register("fires", "Fires that finished, by job and outcome", metrics.fires.clone());
        registry.register(
            "node_results",
            "Node attempt results recorded, by job and status (and node with per_node)",
            metrics.node_results.clone(),
        );
        registry.register("fires_skipped", "Fires recorded as skipped, by job and reason", metrics.skipped.clone());
        registry.register(
            "fires_missed",
            "Fires missed during downtime or a stall that the catch-up policy did not run, by job",
            metrics.missed.clone(),
        );
        registry.register("fires_catch_up", "Catch-up fires started, by job", metrics.catch_up.clone());
        registry.register(
            "fire_duration_seconds",
            "Time from a fire's start to its last node's result, by job",
            metrics.duration.clone(),
        );
        registry.register(
            "job_last_success_timestamp_seconds",
            "When the job's last fire with outcome ok finished, in seconds since the Unix epoch",
            metrics.last_success.clone(),
        );
        registry.register(
            "schedule_lag_seconds",
            "Scheduled fires: time from the planned start (instant plus jitter) to each node's task start",
            metrics.lag.clone(),
        );
        registry.register("fires_running", "Fires running now", metrics.running.clone());
        registry.register("ssh_masters_open", "OpenSSH masters open now", metrics.masters.clone());
        registry.register(
            "ssh_reconnects",
            "Dead OpenSSH masters started again (by node with per_node)",
            metrics.reconnects.clone(),
        );
        registry.register("reloads", "Configuration reloads, by result (ok, failed)", metrics.reloads.clone());
        registry.register(
            "store_write_seconds",
            "Time the store's writer takes to commit one transaction",
            metrics.store_writes.clone(),
        );
        metrics
    }

    /// Applies a reloaded `metrics:` setting; turning `per_node` off drops the node series.
    pub fn configure(&self, settings: MetricsSettings) {
        self.public.store(settings.public, Ordering::Relaxed);
        let was = self.per_node.swap(settings.per_node, Ordering::Relaxed);
        if was && !settings.per_node {
            let mut series = self.lock();
            for set in series.values_mut() {
                set.retain(|(kind, labels)| {
                    let node = *kind == Kind::NodeResults && labels.iter().any(|(key, _)| *key == "node");
                    if node {
                        self.node_results.remove(labels);
                    }
                    !node
                });
            }
        }
    }

    pub fn is_public(&self) -> bool {
        self.public.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<(Kind, Labels)>>> {
        // Held only to insert or remove entries, which cannot leave it half done.
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The labels of a job's series, remembered so that `forget_job` finds them.
    fn job_series(&self, kind: Kind, job: &str, more: &[(&'static str, &str)]) -> Labels {
        let mut labels: Labels = vec![("job", job.to_string())];
        labels.extend(more.iter().map(|(key, value)| (*key, value.to_string())));
        self.lock().entry(job.to_string()).or_default().insert((kind, labels.clone()));
        labels
    }

    /// A catch-up fire's tasks started.
    pub fn catch_up_started(&self, job: &str) {
        self.catch_up.get_or_create(&self.job_series(Kind::CatchUp, job, &[])).inc();
    }

    /// A fire ended with `outcome` (`ok`, `failed`, `timed-out`, `interrupted`) after `took`.
    pub fn fire_finished(&self, job: &str, outcome: &str, took: Duration, finished_unix: f64) {
        self.fires.get_or_create(&self.job_series(Kind::Fires, job, &[("outcome", outcome)])).inc();
        self.duration.get_or_create(&self.job_series(Kind::Duration, job, &[])).observe(took.as_secs_f64());
        if outcome == "ok" {
            self.last_success.get_or_create(&self.job_series(Kind::LastSuccess, job, &[])).set(finished_unix);
        }
    }

    /// A node attempt's result was recorded.
    pub fn node_result(&self, job: &str, node: &str, status: &str) {
        let labels = if self.per_node.load(Ordering::Relaxed) {
            self.job_series(Kind::NodeResults, job, &[("node", node), ("status", status)])
        } else {
            self.job_series(Kind::NodeResults, job, &[("status", status)])
        };
        self.node_results.get_or_create(&labels).inc();
    }

    /// A scheduled fire's task started on a node, `lag` after its planned start.
    pub fn task_lag(&self, lag: Duration) {
        self.lag.observe(lag.as_secs_f64());
    }

    /// A fire was recorded as skipped; `reason` is `overlap` or `stopping`.
    pub fn fire_skipped(&self, job: &str, reason: &str) {
        self.skipped.get_or_create(&self.job_series(Kind::Skipped, job, &[("reason", reason)])).inc();
    }

    /// Catch-up found `count` missed fires of `job` that its policy does not run.
    pub fn fires_missed(&self, job: &str, count: usize) {
        if count > 0 {
            self.missed.get_or_create(&self.job_series(Kind::Missed, job, &[])).inc_by(count as u64);
        }
    }

    /// A dead master of `node` was started again.
    pub fn ssh_reconnected(&self, node: &str) {
        let labels: Labels =
            if self.per_node.load(Ordering::Relaxed) { vec![("node", node.to_string())] } else { Vec::new() };
        self.reconnects.get_or_create(&labels).inc();
    }

    pub fn reloaded(&self, ok: bool) {
        self.reloads.get_or_create(&vec![("result", if ok { "ok" } else { "failed" }.to_string())]).inc();
    }

    /// The store's writer committed a transaction in `took`.
    pub fn store_write(&self, took: Duration) {
        self.store_writes.observe(took.as_secs_f64());
    }

    /// A reload removed `job`: its series are no longer exported.
    pub fn forget_job(&self, job: &str) {
        let Some(series) = self.lock().remove(job) else { return };
        for (kind, labels) in series {
            match kind {
                Kind::Fires => self.fires.remove(&labels),
                Kind::NodeResults => self.node_results.remove(&labels),
                Kind::Skipped => self.skipped.remove(&labels),
                Kind::Missed => self.missed.remove(&labels),
                Kind::CatchUp => self.catch_up.remove(&labels),
                Kind::Duration => self.duration.remove(&labels),
                Kind::LastSuccess => self.last_success.remove(&labels),
            };
        }
    }

    /// The metrics' text; `running` and `masters` are taken as the daemon reports them now.
    pub fn render(&self, running: usize, masters: usize) -> String {
        self.running.set(running as i64);
        self.masters.set(masters as i64);
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// The classic Prometheus text format (0.0.4) of `render`'s OpenMetrics text: a
/// counter's HELP and TYPE name its `_total` samples, and there is no `# EOF`.
/// Scrapers that do not ask for OpenMetrics (promtool, curl, older tools) read this.
pub(crate) fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(pending) = help.replace(line) {
                out.push_str(pending);
                out.push('\n');
            }
            continue;
        }
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|rest| rest.strip_suffix(" counter")) {
            if let Some(pending) = help.take() {
                let text = pending.strip_prefix(&format!("# HELP {name} ")).unwrap_or_default();
                out.push_str(&format!("# HELP {name}_total {text}\n"));
            }
            out.push_str(&format!("# TYPE {name}_total counter\n"));
            continue;
        }
        if let Some(pending) = help.take() {
            out.push_str(pending);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_job_leaves_no_series_and_node_labels_need_per_node() {
        let metrics = Metrics::new(MetricsSettings::default());
        metrics.catch_up_started("a");
        metrics.node_result("a", "web1", "ok");
        metrics.fire_finished("a", "ok", Duration::from_millis(20), 1.0);
        metrics.fire_skipped("b", "overlap");
        let text = metrics.render(0, 0);
        assert!(text.contains("loom_fires_total{job=\"a\",outcome=\"ok\"} 1"), "{text}");
        assert!(text.contains("loom_node_results_total{job=\"a\",status=\"ok\"} 1"), "{text}");
        assert!(text.contains("loom_fires_catch_up_total{job=\"a\"} 1"), "{text}");
        assert!(text.contains("loom_fires_skipped_total{job=\"b\",reason=\"overlap\"} 1"), "{text}");
        assert!(!text.contains("web1"), "{text}");
        metrics.forget_job("a");
        let text = metrics.render(0, 0);
        assert!(!text.contains("job=\"a\""), "{text}");
        assert!(text.contains("job=\"b\""), "{text}");

        metrics.configure(MetricsSettings { public: true, per_node: true });
        metrics.node_result("c", "web1", "failed");
        assert!(metrics.render(0, 0).contains("loom_node_results_total{job=\"c\",node=\"web1\",status=\"failed\"} 1"));
        metrics.configure(MetricsSettings { public: true, per_node: false });
        assert!(!metrics.render(0, 0).contains("web1"));
        assert!(metrics.is_public());
    }

    #[test]
    fn the_classic_text_names_counters_by_their_samples() {
        let metrics = Metrics::new(MetricsSettings::default());
        metrics.fire_skipped("b", "overlap");
        let text = prometheus_text(&metrics.render(2, 0));
        assert!(text.contains("# HELP loom_fires_skipped_total Fires recorded as skipped, by job and reason.\n# TYPE loom_fires_skipped_total counter\nloom_fires_skipped_total{job=\"b\",reason=\"overlap\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE loom_fires_running gauge\nloom_fires_running 2\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }
}
