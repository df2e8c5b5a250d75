//! Writing a fire down: the state store, the job's own log file, the daemon's log.
//!
//! Shared by the daemon and `loom run`, so a fire is recorded the same way whoever
//! started it. A failure to record is logged and never stops the fire: the work on
//! the nodes matters more than its paperwork.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};

use super::fire::{Fire, FireReport};
use super::node_result::NodeResult;
use crate::config::Job;
use crate::store::{FencedRecord, FireStatus, Notices, Store};

pub struct Recorder {
    store: Option<Arc<Store>>,
    fire_id: Option<i64>,
    job: Arc<Job>,
    log: Option<Mutex<std::fs::File>>,
    /// A cluster fire's share: each node's lease epoch, under which its results
    /// are written (`Store::record_fenced`); the store ends the fire.
    leases: Option<HashMap<String, i64>>,
    /// Told the status of the (cluster) fire when results written here ended
    /// it, once they have been announced (`announced`).
    ended: Option<Box<dyn Fn(FireStatus) + Send + Sync>>,
    /// How results written here ended the fire, until `announced` tells `ended`.
    ending: Mutex<Option<FireStatus>>,
}

impl Recorder {
    /// Records the fire as running, before any task starts, and gives it its number.
    /// `None` means this scheduled fire is already in the record and must not run again.
    pub fn begin(store: Option<&Arc<Store>>, job: &Arc<Job>, fire: &mut Fire, nodes: &[String]) -> Option<Recorder> {
        let fire_id = match store.map(|s| s.begin_fire(&fire.job, fire.scheduled, fire.trigger, nodes)) {
            None => None,
            Some(Ok(Some(id))) => Some(id),
            Some(Ok(None)) => {
                tracing::info!(job = %fire.job, scheduled = %fire.scheduled, "fire already recorded; not running it twice");
                return None;
            }
            Some(Err(err)) => {
                tracing::error!(job = %fire.job, "failed to record the fire (it runs anyway): {err}");
                None
            }
        };
        fire.id = fire_id;
        Some(Recorder::recorded(store, job, fire_id))
    }

    /// A recorder for a fire already written to the store as `fire_id` (or not
    /// recorded at all, when `None`).
    pub fn recorded(store: Option<&Arc<Store>>, job: &Arc<Job>, fire_id: Option<i64>) -> Recorder {
        let log = job.log.as_ref().and_then(|path| {
            if let Some(folder) = path.parent() {
                let _ = std::fs::create_dir_all(folder);
            }
            match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                Ok(file) => Some(Mutex::new(file)),
                Err(err) => {
                    tracing::error!(job = %job.name, "failed to open the job log {}: {err}", path.display());
                    None
                }
            }
        });
        Recorder {
            store: store.cloned(),
            fire_id,
            job: Arc::clone(job),
            log,
            leases: None,
            ended: None,
            ending: Mutex::new(None),
        }
    }

    /// A recorder for this daemon's share of cluster fire `fire_id`: the nodes it
    /// holds leases on, with their epochs; `ended` is told the fire's status if
    /// its results end the fire.
    pub fn leased(
        store: &Arc<Store>,
        job: &Arc<Job>,
        fire_id: i64,
        leases: HashMap<String, i64>,
        ended: Box<dyn Fn(FireStatus) + Send + Sync>,
    ) -> Recorder {
        Recorder { leases: Some(leases), ended: Some(ended), ..Recorder::recorded(Some(store), job, Some(fire_id)) }
    }

    pub fn job(&self) -> &Arc<Job> {
        &self.job
    }

    pub fn fire_id(&self) -> Option<i64> {
        self.fire_id
    }

    /// Records node results (the store, then the job's log) and returns once the
    /// store has committed them, so they can be reported.
    pub async fn nodes(&self, results: &[NodeResult]) {
        if let (Some(store), Some(fire_id), Some(leases)) = (&self.store, self.fire_id, &self.leases) {
            let records = results.iter().filter_map(|result| {
                let epoch = *leases.get(&result.node)?;
                Some(FencedRecord { record: result.record(fire_id), epoch, last: result.is_last(self.job.retries) })
            });
            match store.record_fenced(fire_id, records.collect(), &self.job.notifications).await {
                Ok(fenced) => {
                    if fenced.refused > 0 {
                        tracing::warn!(
                            job = %self.job.name,
                            fire = fire_id,
                            refused = fenced.refused,
                            "node results not recorded: another daemon took over their nodes"
                        );
                    }
                    if fenced.ended.is_some() {
                        *self.ending.lock().expect("ending lock") = fenced.ended;
                    }
                }
                Err(err) => tracing::error!(job = %self.job.name, "failed to record node results: {err}"),
            }
        } else if let (Some(store), Some(fire_id)) = (&self.store, self.fire_id) {
            let records = results.iter().map(|result| result.record(fire_id));
            if let Err(err) = store.record_nodes(records.collect()).await {
                tracing::error!(job = %self.job.name, "failed to record node results: {err}");
            }
        }
        for result in results {
            self.log(result);
        }
    }

    /// The results recorded last have been announced (events, log): if they
    /// ended the fire, the daemon that claimed it may now announce its end, so
    /// that a listener sees every node's end before the fire's.
    pub fn announced(&self) {
        let status = self.ending.lock().expect("ending lock").take();
        if let (Some(status), Some(ended)) = (status, &self.ended) {
            ended(status);
        }
    }

    /// Appends a node's result and output to the job's own log file, if it has one.
    fn log(&self, result: &NodeResult) {
        if let Some(log) = &self.log {
            let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
            let (job, node) = (&self.job.name, &result.node);
            let mut text = format!(
                "{now} job={job} node={node} attempt={} status={} seconds={:.3}",
                result.attempt,
                result.status,
                result.duration.as_secs_f64()
            );
            if let Some(error) = &result.error {
                text.push_str(&format!(" error={error:?}"));
            }
            text.push('\n');
            for line in result.output.lines() {
                text.push_str(&format!("{now} job={job} node={node} | {line}\n"));
            }
            let mut file = log.lock().expect("job log lock");
            if let Err(err) = file.write_all(text.as_bytes()) {
                tracing::error!(job = %self.job.name, "failed to write the job log: {err}");
            }
        }
    }

    /// What the fire's end may have to tell (its job's rules and the fire's facts).
    /// Made once, from the fire's final report: node retries never add to it.
    fn notices(&self, report: &FireReport) -> Option<Notices> {
        Notices::of(&self.job.name, &self.job.notifications, || crate::notify::body::fire_payload(report))
    }

    /// Records the fire's end, and enqueues its notifications in the same
    /// transaction; returns once it is committed.
    pub async fn finish(&self, report: &FireReport) {
        if let (Some(store), Some(fire_id), None) = (&self.store, self.fire_id, &self.leases)
            && let Err(err) = store.finish_queued(fire_id, report.status(), report.started, self.notices(report)).await
        {
            tracing::error!(job = %self.job.name, "failed to record the end of a fire: {err}");
        }
    }
}
