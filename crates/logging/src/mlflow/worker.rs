//! The background worker: a bounded in-memory queue drained into MLflow with retries.
//!
//! The training thread only pushes into the queue (never waits on the network). The worker
//! creates the run, then sends batches in order; a retryable failure (no answer, 5xx) keeps the
//! batch and retries it with exponential backoff, a permanent one (4xx) drops it. Problems are
//! recorded here and reported once by the logger.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use oml_interfaces::RunStatus;

use super::client::{MetricPoint, MlflowClient, MlflowError, RunInfo, limits};

/// What an artifact's bytes are.
#[derive(Debug)]
pub(crate) enum ArtifactData {
    Bytes(Vec<u8>),
    /// Read when sent (the dataset CSV may be large).
    File(PathBuf),
}

#[derive(Debug)]
pub(crate) enum Item {
    Metric(MetricPoint),
    Param(String, String),
    Tag(String, String),
    Artifact { path: String, data: ArtifactData },
    Status { status: RunStatus, end_ms: i64 },
}

/// Counters of what happened to the logged data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MlflowStats {
    /// Metric points the server accepted.
    pub sent_points: u64,
    /// Metric points dropped because the queue was full (the local log has them).
    pub dropped_points: u64,
    /// Figures dropped because the queue's byte bound was reached.
    pub dropped_artifacts: u64,
    /// Requests the server rejected for good (4xx); their data was dropped.
    pub rejected_requests: u64,
    /// Failed attempts that were retried.
    pub retried_attempts: u64,
    /// Metric points waiting to be sent.
    pub pending_points: usize,
    /// Items (points, params, tags, artifacts, status) waiting to be sent.
    pub pending_items: usize,
}

pub(crate) struct State {
    pub items: VecDeque<Item>,
    pending_bytes: usize,
    busy: bool,
    stop: bool,
    pub run: Option<RunInfo>,
    pub stats: MlflowStats,
    /// The current outage (retryable failures), cleared by the next success.
    outage: Option<String>,
    outage_reported: bool,
    rejected: Option<String>,
    rejected_reported: bool,
    dropped_reported: bool,
    /// Set when the run could not be created for a non-retryable reason.
    pub disabled: Option<String>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Signals the worker: new items or stop.
    work: Condvar,
    /// Signals waiters: progress (batch done, run created, worker exited).
    progress: Condvar,
    max_points: usize,
    max_bytes: usize,
    uri: String,
    max_backoff: Duration,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(uri: String, max_points: usize, max_bytes: usize, max_backoff: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                pending_bytes: 0,
                busy: false,
                stop: false,
                run: None,
                stats: MlflowStats::default(),
                outage: None,
                outage_reported: false,
                rejected: None,
                rejected_reported: false,
                dropped_reported: false,
                disabled: None,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            max_points,
            max_bytes,
            uri,
            max_backoff,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Queues items, dropping the oldest metric points / figures beyond the bounds.
    pub fn push(&self, new: impl IntoIterator<Item = Item>) {
        let mut st = self.lock();
        if st.disabled.is_some() {
            return;
        }
        for item in new {
            match &item {
                Item::Metric(_) => st.stats.pending_points += 1,
                Item::Artifact {
                    data: ArtifactData::Bytes(b),
                    ..
                } => st.pending_bytes += b.len(),
                _ => {}
            }
            st.items.push_back(item);
        }
        while st.stats.pending_points > self.max_points {
            match st.items.iter().position(|i| matches!(i, Item::Metric(_))) {
                Some(pos) => {
                    st.items.remove(pos);
                    st.stats.pending_points -= 1;
                    st.stats.dropped_points += 1;
                }
                None => break,
            }
        }
        while st.pending_bytes > self.max_bytes {
            let pos = st.items.iter().position(|i| {
                matches!(
                    i,
                    Item::Artifact {
                        data: ArtifactData::Bytes(_),
                        ..
                    }
                )
            });
            match pos.and_then(|p| st.items.remove(p)) {
                Some(Item::Artifact {
                    data: ArtifactData::Bytes(b),
                    ..
                }) => {
                    st.pending_bytes -= b.len();
                    st.stats.dropped_artifacts += 1;
                }
                _ => break,
            }
        }
        st.stats.pending_items = st.items.len();
        drop(st);
        self.work.notify_all();
    }

    /// The next problem to report, once per outage / kind.
    pub fn take_report(&self) -> Option<String> {
        let mut st = self.lock();
        if let Some(d) = st.disabled.clone()
            && !st.outage_reported
        {
            st.outage_reported = true;
            return Some(d);
        }
        if let Some(o) = st.outage.clone()
            && !st.outage_reported
        {
            st.outage_reported = true;
            return Some(o);
        }
        if let Some(r) = st.rejected.clone()
            && !st.rejected_reported
        {
            st.rejected_reported = true;
            return Some(r);
        }
        if (st.stats.dropped_points > 0 || st.stats.dropped_artifacts > 0) && !st.dropped_reported {
            st.dropped_reported = true;
            return Some(format!(
                "MLflow queue full: dropped the oldest {} unsent metric points and {} figures \
                 (bounds: {} points, {} bytes); the local log keeps them",
                st.stats.dropped_points,
                st.stats.dropped_artifacts,
                self.max_points,
                self.max_bytes
            ));
        }
        None
    }

    /// Waits until nothing is queued or in flight, or `deadline`; true when drained.
    pub fn wait_drained(&self, deadline: Instant) -> bool {
        let mut st = self.lock();
        loop {
            if (st.items.is_empty() && !st.busy) || st.disabled.is_some() {
                return st.items.is_empty() && !st.busy;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .progress
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until the run exists (or creation failed for good), or `deadline`.
    pub fn wait_run(&self, deadline: Instant) -> Option<RunInfo> {
        let mut st = self.lock();
        loop {
            if st.run.is_some() || st.disabled.is_some() || st.stop {
                return st.run.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .progress
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub fn stop(&self) {
        self.lock().stop = true;
        self.work.notify_all();
        self.progress.notify_all();
    }

    /// Sleeps `d` unless stopped first; false when stopped.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut st = self.lock();
        while !st.stop {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            st = self
                .work
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        false
    }

    fn note_outage(&self, e: &MlflowError) {
        let mut st = self.lock();
        st.stats.retried_attempts += 1;
        if st.outage.is_none() {
            st.outage = Some(format!(
                "MLflow server {} is unreachable or failing ({e}); training goes on: unsent data is kept \
                 in memory (up to {} metric points) and retried in the background with backoff (up to {:?}); \
                 the local log keeps everything. Reported once per outage.",
                self.uri, self.max_points, self.max_backoff
            ));
        }
    }

    fn note_success(&self) {
        let mut st = self.lock();
        st.outage = None;
        st.outage_reported = false;
    }

    fn note_rejected(&self, e: &MlflowError, what: &str) {
        let mut st = self.lock();
        st.stats.rejected_requests += 1;
        if st.rejected.is_none() {
            st.rejected = Some(format!(
                "MLflow rejected {what} ({e}); that data was dropped (the local log keeps it). \
                 Later rejections are counted, not reported."
            ));
        }
    }

    fn take_batch(&self) -> Option<Batch> {
        let mut st = self.lock();
        loop {
            if st.stop {
                return None;
            }
            if !st.items.is_empty() {
                break;
            }
            st = self.work.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        let batch = match st.items.front() {
            Some(Item::Artifact { .. } | Item::Status { .. }) => match st.items.pop_front() {
                Some(Item::Artifact { path, data }) => {
                    if let ArtifactData::Bytes(b) = &data {
                        st.pending_bytes -= b.len();
                    }
                    Batch::Artifact { path, data }
                }
                Some(Item::Status { status, end_ms }) => Batch::Status { status, end_ms },
                _ => unreachable!("front was checked"),
            },
            _ => {
                let (mut metrics, mut params, mut tags) = (Vec::new(), Vec::new(), Vec::new());
                let (mut pkeys, mut tkeys) = (HashSet::new(), HashSet::new());
                let mut bytes = 0usize;
                loop {
                    let total = metrics.len() + params.len() + tags.len();
                    let fits = match st.items.front() {
                        Some(Item::Metric(m)) => {
                            metrics.len() < limits::METRICS_PER_BATCH
                                && bytes + m.key.len() + 96 <= limits::BATCH_BYTES
                        }
                        Some(Item::Param(k, v)) => {
                            params.len() < limits::PARAMS_TAGS_PER_BATCH
                                && !pkeys.contains(k)
                                && bytes + k.len() + v.len() + 64 <= limits::BATCH_BYTES
                        }
                        Some(Item::Tag(k, v)) => {
                            tags.len() < limits::PARAMS_TAGS_PER_BATCH
                                && !tkeys.contains(k)
                                && bytes + k.len() + v.len() + 64 <= limits::BATCH_BYTES
                        }
                        _ => false,
                    };
                    if !fits || total >= limits::ENTITIES_PER_BATCH {
                        break;
                    }
                    match st.items.pop_front() {
                        Some(Item::Metric(m)) => {
                            bytes += m.key.len() + 96;
                            st.stats.pending_points -= 1;
                            metrics.push(m);
                        }
                        Some(Item::Param(k, v)) => {
                            bytes += k.len() + v.len() + 64;
                            pkeys.insert(k.clone());
                            params.push((k, v));
                        }
                        Some(Item::Tag(k, v)) => {
                            bytes += k.len() + v.len() + 64;
                            tkeys.insert(k.clone());
                            tags.push((k, v));
                        }
                        _ => unreachable!("front was checked"),
                    }
                }
                Batch::Entities {
                    metrics,
                    params,
                    tags,
                }
            }
        };
        st.busy = true;
        st.stats.pending_items = st.items.len();
        Some(batch)
    }

    fn batch_done(&self, batch: &Batch, sent: bool) {
        let mut st = self.lock();
        st.busy = false;
        if sent && let Batch::Entities { metrics, .. } = batch {
            st.stats.sent_points += metrics.len() as u64;
        }
        drop(st);
        self.progress.notify_all();
    }

    /// Puts an unsent batch back at the front (the worker is stopping with data left).
    fn requeue(&self, batch: Batch) {
        let mut st = self.lock();
        st.busy = false;
        match batch {
            Batch::Entities {
                metrics,
                params,
                tags,
            } => {
                st.stats.pending_points += metrics.len();
                let items = metrics
                    .into_iter()
                    .map(Item::Metric)
                    .chain(params.into_iter().map(|(k, v)| Item::Param(k, v)))
                    .chain(tags.into_iter().map(|(k, v)| Item::Tag(k, v)));
                for (i, it) in items.enumerate() {
                    st.items.insert(i, it);
                }
            }
            Batch::Artifact { path, data } => st.items.push_front(Item::Artifact { path, data }),
            Batch::Status { status, end_ms } => {
                st.items.push_front(Item::Status { status, end_ms })
            }
        }
        st.stats.pending_items = st.items.len();
        drop(st);
        self.progress.notify_all();
    }
}

enum Batch {
    Entities {
        metrics: Vec<MetricPoint>,
        params: Vec<(String, String)>,
        tags: Vec<(String, String)>,
    },
    Artifact {
        path: String,
        data: ArtifactData,
    },
    Status {
        status: RunStatus,
        end_ms: i64,
    },
}

impl Batch {
    fn describe(&self) -> String {
        match self {
            Batch::Entities {
                metrics,
                params,
                tags,
            } => {
                format!(
                    "a batch of {} metrics, {} params and {} tags",
                    metrics.len(),
                    params.len(),
                    tags.len()
                )
            }
            Batch::Artifact { path, .. } => format!("artifact {path:?}"),
            Batch::Status { status, .. } => format!("run status {}", crate::status_name(*status)),
        }
    }
}

/// What the worker needs to create the run.
pub(crate) struct RunSpec {
    pub experiment_name: String,
    pub run_name: Option<String>,
    pub start_ms: i64,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

fn send(client: &MlflowClient, run: &RunInfo, batch: &Batch) -> Result<(), MlflowError> {
    match batch {
        Batch::Entities {
            metrics,
            params,
            tags,
        } => client.log_batch(&run.run_id, metrics, params, tags),
        Batch::Artifact { path, data } => match data {
            ArtifactData::Bytes(b) => client.upload_artifact(run, path, b),
            ArtifactData::File(f) => {
                let bytes = std::fs::read(f).map_err(|source| MlflowError::Artifact {
                    path: f.display().to_string(),
                    source,
                })?;
                client.upload_artifact(run, path, &bytes)
            }
        },
        Batch::Status { status, end_ms } => client.update_run(&run.run_id, *status, *end_ms),
    }
}

/// The worker thread's body.
pub(crate) fn run(shared: &Shared, client: &MlflowClient, spec: &RunSpec) {
    let mut delay = spec.initial_backoff;
    let mut next_delay = |reset: bool| {
        if reset {
            delay = spec.initial_backoff;
            return delay;
        }
        let d = delay;
        delay = (delay * 2).min(spec.max_backoff);
        d
    };

    let run = loop {
        let attempt = client
            .get_or_create_experiment(&spec.experiment_name)
            .and_then(|exp| client.create_run(&exp, spec.run_name.as_deref(), spec.start_ms, &[]));
        match attempt {
            Ok(run) => {
                shared.note_success();
                shared.lock().run = Some(run.clone());
                shared.progress.notify_all();
                break run;
            }
            Err(e) if e.is_retryable() => {
                shared.note_outage(&e);
                if !shared.sleep(next_delay(false)) {
                    return;
                }
            }
            Err(e) => {
                let mut st = shared.lock();
                st.disabled = Some(format!(
                    "MLflow run could not be created on {} ({e}); MLflow logging is off for this run \
                     (the local log keeps everything)",
                    shared.uri
                ));
                st.stats.dropped_points += st.stats.pending_points as u64;
                st.items.clear();
                st.pending_bytes = 0;
                st.stats.pending_points = 0;
                st.stats.pending_items = 0;
                st.stats.rejected_requests += 1;
                // The "could not be created" report covers these; no separate "queue full" one.
                st.dropped_reported = true;
                drop(st);
                shared.progress.notify_all();
                return;
            }
        }
    };
    next_delay(true);

    while let Some(batch) = shared.take_batch() {
        loop {
            match send(client, &run, &batch) {
                Ok(()) => {
                    shared.note_success();
                    shared.batch_done(&batch, true);
                    next_delay(true);
                    break;
                }
                Err(e) if e.is_retryable() => {
                    shared.note_outage(&e);
                    if !shared.sleep(next_delay(false)) {
                        shared.requeue(batch);
                        return;
                    }
                }
                Err(e) => {
                    shared.note_rejected(&e, &batch.describe());
                    shared.batch_done(&batch, false);
                    break;
                }
            }
        }
    }
}
