//! What the training pipelines share: opening (or resuming) the run folder, and running Burn's
//! `SupervisedTraining` with this crate's metrics, checkpoints, progress bars and loggers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use burn::data::dataloader::DataLoader;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::train::metric::LossMetric;
use burn::train::{
    ExecutionStrategy, InferenceStep, Interrupter, Learner, LearnerModel, MultiDeviceOptim,
    SupervisedTraining, TrainStep, TrainingStrategy,
};
use oml_interfaces::{MetricsReport, PipelineLogger, RgbImage, RunStatus};
use oml_logging::{LearnerBridge, SharedLogger};
use oml_metrics::learner::RetrievalMetrics;

use crate::applog::ExperimentLog;
use crate::checkpoint::{
    EpochStore, EveryEpoch, LOG_MARKS_FILE, StageExtras, WEIGHTS_FILE, discard_partial, epoch_dir,
    last_complete_epoch, migrate_flat_layout, record_path, write_atomic,
};
use crate::error::TrainError;
use crate::history::History;
use crate::model::{EmbeddingOutput, EpochStepOutput, StepGuard};
use crate::progress::{Console, ProgressRenderer};
use crate::rundir::{RunState, Status, choose_run_dir, write_state};
use crate::validation::{EpochScoring, StepLogs};

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), TrainError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| TrainError::io(path, e))?;
    write_atomic(path, &bytes).map_err(|e| TrainError::io(path, e))
}

/// An opened run folder.
#[derive(Debug, Clone)]
pub(crate) struct RunFolder {
    pub path: PathBuf,
    pub ckpt_dir: PathBuf,
    pub hash: String,
    /// It held an unfinished run of this config.
    pub resumed: bool,
    /// The epoch a resumed run continues after.
    pub resume_epoch: Option<usize>,
    /// The append-only log files a resumed run's loggers had written (cut back to the resume
    /// point), for its new loggers to continue.
    pub log_files: Vec<PathBuf>,
}

/// Where the run folder comes from.
pub(crate) struct RunPlace<'a> {
    pub logs_root: PathBuf,
    pub explicit: Option<PathBuf>,
    pub name: &'a str,
    pub postfix: Option<&'a str>,
    pub resume: bool,
}

/// How to run `oml train` beyond the config.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Backend name (wins over the config's `accelerator`).
    pub device: Option<String>,
    /// Name of the config (the run folder's prefix), usually the file's stem.
    pub config_name: String,
    /// The config file's text, copied to the run folder (the parsed config is written if absent).
    pub config_text: Option<String>,
    /// Paths in the config are relative to this folder (the working directory by default).
    pub base_dir: PathBuf,
    /// Use this run folder (instead of one under `logs_root`).
    pub run_dir: Option<PathBuf>,
    /// Resume an unfinished run of the same config (default true).
    pub resume: bool,
    /// Where progress and results are printed.
    pub console: Console,
    /// Stop once this epoch is checkpointed, early in the next one, as a kill would (for
    /// tests and time-boxed runs); re-running resumes. `None`: train to `max_epochs`.
    pub stop_after_epoch: Option<usize>,
    /// Installs the run's `experiment.log` ([`crate::applog`]); `None`: Burn's own installer,
    /// which works for the first run of a process that has no log subscriber yet.
    pub experiment_log: Option<ExperimentLog>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            device: None,
            config_name: "train".into(),
            config_text: None,
            base_dir: PathBuf::from("."),
            run_dir: None,
            resume: true,
            console: Console::quiet(),
            stop_after_epoch: None,
            experiment_log: None,
        }
    }
}

/// Opens the run folder of a training config (`opts.run_dir`, else `logs_folder` under the
/// logs root, else a new or resumable folder there) and returns it with the config as JSON
/// (its fingerprint names the run; the loggers record it).
pub(crate) fn open_config_run(
    config: &impl serde::Serialize,
    opts: &TrainOptions,
    logs_root: &Path,
    logs_folder: Option<&str>,
    postfix: Option<&str>,
    console: &Console,
) -> Result<(RunFolder, serde_json::Value), TrainError> {
    let config_json =
        serde_json::to_value(config).map_err(|e| TrainError::config("", e.to_string()))?;
    let config_text = match &opts.config_text {
        Some(t) => t.clone(),
        None => {
            serde_yaml_ng::to_string(config).map_err(|e| TrainError::config("", e.to_string()))?
        }
    };
    let logs_root = crate::config::resolve(&opts.base_dir, logs_root);
    let place = RunPlace {
        explicit: opts
            .run_dir
            .clone()
            .or_else(|| logs_folder.map(|f| logs_root.join(f))),
        logs_root,
        name: &opts.config_name,
        postfix,
        resume: opts.resume,
    };
    let hash = crate::rundir::fingerprint(&config_json);
    Ok((open_run(place, hash, config_text, console)?, config_json))
}

/// Chooses, creates or reopens the run folder; a new one gets `config.yaml` and `state.json`.
pub(crate) fn open_run(
    place: RunPlace<'_>,
    hash: String,
    config_text: String,
    console: &Console,
) -> Result<RunFolder, TrainError> {
    let choice = choose_run_dir(
        &place.logs_root,
        place.explicit.as_deref(),
        place.name,
        place.postfix,
        &hash,
        place.resume,
    )?;
    let path = choice.path.clone();
    std::fs::create_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
    let ckpt_dir = path.join("checkpoints");
    std::fs::create_dir_all(&ckpt_dir).map_err(|e| TrainError::io(&ckpt_dir, e))?;
    let resume_epoch = if choice.resume {
        // what a kill left half-written is never resumed from
        migrate_flat_layout(&ckpt_dir)
            .and_then(|()| discard_partial(&ckpt_dir))
            .map_err(|e| TrainError::io(&ckpt_dir, e))?;
        last_complete_epoch(&ckpt_dir)
    } else {
        None
    };
    if !choice.resume {
        let p = path.join("config.yaml");
        write_atomic(&p, config_text.as_bytes()).map_err(|e| TrainError::io(&p, e))?;
        write_state(
            &path,
            &RunState {
                status: Status::Running,
                config_hash: hash.clone(),
                last_epoch: 0,
            },
        )?;
    }
    let mut run = RunFolder {
        path: path.clone(),
        ckpt_dir: ckpt_dir.clone(),
        hash: hash.clone(),
        resumed: choice.resume,
        resume_epoch,
        log_files: Vec::new(),
    };
    if run.resumed {
        run.log_files = rewind_logs(&run, resume_epoch.unwrap_or(0))?;
    }
    match resume_epoch {
        Some(e) => console.line(format!("resuming {} after epoch {e}", path.display())),
        None if choice.resume => console.line(format!(
            "restarting {} (no complete checkpoint yet)",
            path.display()
        )),
        None => console.line(format!("run folder {}", path.display())),
    }
    Ok(run)
}

/// The file recording the append-only logs' lengths when `epoch` was checkpointed.
pub(crate) fn log_marks_path(ckpt_dir: &Path, epoch: usize) -> PathBuf {
    epoch_dir(ckpt_dir, epoch).join(LOG_MARKS_FILE)
}

/// Flushes the loggers and writes the append-only logs' lengths to `marks`. A logger that
/// cannot flush does not stop training (its rows arrive later, or never).
pub(crate) fn mark_logs(
    logger: &SharedLogger,
    run_dir: &Path,
    marks: &Path,
) -> std::io::Result<()> {
    write_atomic(marks, &log_lengths(logger, run_dir)?)
}

/// Flushes the loggers and returns the lengths of the files they append to as JSON, keyed by
/// their paths (relative to `run_dir` where inside it). Both happen under the logger's lock, so
/// no step logged meanwhile can slip in between: each length ends at a whole record.
fn log_lengths(logger: &SharedLogger, run_dir: &Path) -> std::io::Result<Vec<u8>> {
    let lengths: std::collections::BTreeMap<String, u64> = logger.with(|l| {
        let _ = l.flush();
        l.append_only_files()
            .into_iter()
            .filter_map(|path| {
                let len = std::fs::metadata(&path).ok()?.len();
                let key = path.strip_prefix(run_dir).unwrap_or(&path);
                Some((key.to_string_lossy().into_owned(), len))
            })
            .collect()
    });
    serde_json::to_vec(&lengths).map_err(std::io::Error::other)
}

/// Cuts the append-only logs back to their lengths at `epoch`'s checkpoint: what a killed run
/// logged after it is logged again by the resumed run, so every step appears once. Returns the
/// files it found marked, which the resumed run's loggers continue.
fn rewind_logs(run: &RunFolder, epoch: usize) -> Result<Vec<PathBuf>, TrainError> {
    let marks = log_marks_path(&run.ckpt_dir, epoch);
    let Ok(bytes) = std::fs::read(&marks) else {
        return Ok(Vec::new());
    };
    let lengths: std::collections::BTreeMap<String, u64> =
        serde_json::from_slice(&bytes).map_err(|e| TrainError::io(&marks, e))?;
    let mut files = Vec::with_capacity(lengths.len());
    for (name, len) in lengths {
        let path = run.path.join(name);
        let file = match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(TrainError::io(&path, e)),
        };
        let now = file.metadata().map_err(|e| TrainError::io(&path, e))?.len();
        if now > len {
            file.set_len(len).map_err(|e| TrainError::io(&path, e))?;
        }
        files.push(path);
    }
    Ok(files)
}

/// The validation history of a run folder (truncated to its last complete epoch).
pub(crate) fn load_history(run: &RunFolder, metric: &str, mode: crate::config::Mode) -> History {
    let mut h: History = std::fs::read(run.path.join("history.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|h: &History| h.metric == metric && h.mode == mode)
        .unwrap_or_else(|| History::new(metric, mode));
    h.truncate_after(run.resume_epoch.unwrap_or(0));
    h
}

/// Logs a report's finite scalars and its figures at `step`; returns how many logger calls failed.
pub(crate) fn log_report(
    logger: &mut SharedLogger,
    step: u64,
    report: &MetricsReport,
    figures: &[(String, RgbImage)],
) -> usize {
    let flat = report.flatten();
    let refs: Vec<(&str, f64)> = flat
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    let mut failed = usize::from(logger.log_scalars(step, &refs).is_err());
    for (title, img) in figures {
        match oml_datasets::visualize::to_figure(img) {
            Ok(fig) => {
                failed += usize::from(
                    logger
                        .log_figure(&format!("image_logs/{title}"), &fig, step)
                        .is_err(),
                )
            }
            Err(_) => failed += 1,
        }
    }
    failed
}

/// An epoch hook stopping the run once `stop_after` is checkpointed (the next epoch starts).
pub(crate) fn stop_after(
    interrupter: Interrupter,
    stop_after: Option<usize>,
) -> impl Fn(usize) + Send + Sync + 'static {
    move |epoch| {
        if stop_after.is_some_and(|s| epoch > s) {
            interrupter.stop(Some(&format!("asked to stop after epoch {}", epoch - 1)));
        }
    }
}

/// Everything [`fit`] needs besides the model and the data.
pub(crate) struct FitContext<'a, M> {
    pub run: &'a RunFolder,
    pub max_epochs: usize,
    pub devices: &'a [Device],
    pub interrupter: Interrupter,
    pub guard: StepGuard,
    pub history: Arc<Mutex<History>>,
    pub logger: SharedLogger,
    pub console: Console,
    pub experiment_log: Option<ExperimentLog>,
    pub loss_name: String,
    pub batches_per_epoch: usize,
    /// Saves the model as `--weights` loads it, into each epoch's folder.
    pub save: SaveWeights<M>,
}

/// Saves the pipeline's model as `--weights` loads it (the extractor, or the pairwise model).
pub(crate) type SaveWeights<M> = Arc<dyn Fn(&M, &Path) -> Result<(), TrainError> + Send + Sync>;

/// What each epoch's folder holds besides the Learner's records and the log marks: the model
/// (`weights.bpk`) that `--weights` loads, so even a killed run leaves one.
fn epoch_extras<M: Module + 'static>(model: &M, save: SaveWeights<M>) -> StageExtras {
    let template = Mutex::new(model.clone());
    Arc::new(move |_epoch, record: ModuleRecord, staging: &Path| {
        let model = lock(&template)
            .clone()
            .try_load_record(record)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        save(&model, &staging.join(WEIGHTS_FILE)).map_err(|e| std::io::Error::other(e.to_string()))
    })
}

/// Runs Burn's `SupervisedTraining` from the run's resume point to `max_epochs`; returns the
/// number of epochs completed in this call.
pub(crate) fn fit<M>(
    ctx: FitContext<'_, M>,
    model: M,
    optim: ModuleOptimizer,
    scheduler: ModuleLrScheduler,
    train_loader: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
    valid_loader: Arc<dyn DataLoader<<M as InferenceStep>::Input>>,
    retrieval: RetrievalMetrics<EpochScoring>,
) -> Result<usize, TrainError>
where
    M: LearnerModel + TrainStep<Output = EpochStepOutput> + InferenceStep<Output = EmbeddingOutput>,
{
    let run = ctx.run;
    let start = run.resume_epoch.unwrap_or(0);
    let store = Arc::new(
        EpochStore::new(&run.ckpt_dir, ctx.history.clone())
            .with_extras(epoch_extras(&model, ctx.save.clone()))
            .with_log_marks({
                let (logger, run_dir) = (ctx.logger.clone(), run.path.clone());
                Arc::new(move |_epoch| log_lengths(&logger, &run_dir))
            })
            .with_on_publish({
                let (path, hash) = (run.path.clone(), run.hash.clone());
                Arc::new(move |epoch| {
                    let state = RunState {
                        status: Status::Running,
                        config_hash: hash.clone(),
                        last_epoch: epoch,
                    };
                    write_state(&path, &state).map_err(|e| std::io::Error::other(e.to_string()))
                })
            }),
    );
    let (model_records, optim_records, scheduler_records) = store.checkpointers();
    let mut training = SupervisedTraining::new(&run.path, train_loader, valid_loader)
        .metric_train_numeric(LossMetric::new())
        .metric_train(StepLogs::new(
            ctx.logger.clone(),
            &ctx.loss_name,
            ctx.batches_per_epoch,
        ))
        .with_custom_checkpointers(model_records, optim_records, scheduler_records)
        .with_checkpointing_strategy(EveryEpoch)
        .num_epochs(ctx.max_epochs)
        .with_interrupter(ctx.interrupter.clone())
        .renderer(Box::new(ProgressRenderer::new(ctx.console.clone())))
        .with_metric_logger(LearnerBridge::new(ctx.logger.clone()).with_batch_interval(0));
    // Each retrieval value as a plain (not numeric) Burn metric: the renderer shows it, and
    // the loggers get the report once, under OML's keys, from the pipeline's recorder.
    training = retrieval
        .all()
        .into_iter()
        .fold(training, |t, m| t.metric_valid(m));
    if let Some(log) = &ctx.experiment_log {
        training =
            training.with_application_logger(Some(log.installer(&run.path.join("experiment.log"))));
    }
    if ctx.devices.len() > 1 {
        training = training.with_training_strategy(TrainingStrategy::Default(
            ExecutionStrategy::multi(ctx.devices.to_vec(), MultiDeviceOptim::OptimMainDevice),
        ));
    }
    if let Some(e) = run.resume_epoch {
        // Burn panics on a record that does not fit the model: check it first
        load_epoch(&model, &run.ckpt_dir, e).map_err(|err| {
            TrainError::Training(format!(
                "cannot resume: {err}; start a new run (--no-resume)"
            ))
        })?;
        training = training.checkpoint(e);
    }
    // `train()`: a module built on a plain device gets gradients only once switched to training
    let result = training.launch(Learner::new(model.train(), optim, scheduler));
    // an epoch whose write failed (or was cut short) leaves nothing behind
    store
        .discard_partial()
        .map_err(|e| TrainError::io(&run.ckpt_dir, e))?;
    let last = last_complete_epoch(&run.ckpt_dir).unwrap_or(0);
    let state = write_state(
        &run.path,
        &RunState {
            status: Status::Running,
            config_hash: run.hash.clone(),
            last_epoch: last,
        },
    );
    let mut logger = ctx.logger.clone();
    let failure = ctx
        .guard
        .error()
        .or_else(|| result.error.map(|e| e.to_string()));
    if let Some(e) = failure {
        let _ = logger.finish(RunStatus::Failed);
        // The cause comes first: on a full disk, state.json cannot be written either.
        return Err(TrainError::Training(match state {
            Ok(()) => e,
            Err(then) => format!("{e}; then {then}"),
        }));
    }
    state?;
    if let Some(i) = result.interrupted {
        let _ = logger.finish(RunStatus::Killed);
        return Err(TrainError::Interrupted {
            epoch: last,
            reason: i.reason.unwrap_or_else(|| "stopped".into()),
            run_dir: run.path.display().to_string(),
        });
    }
    Ok(last.saturating_sub(start))
}

/// `model` with the weights checkpointed at `epoch`.
pub(crate) fn load_epoch<M: Module>(
    model: &M,
    ckpt_dir: &Path,
    epoch: usize,
) -> Result<M, TrainError> {
    let path = record_path(ckpt_dir, "model", epoch);
    let record = ModuleRecord::load(&path).map_err(|e| TrainError::io(&path, e))?;
    model
        .clone()
        .try_load_record(record)
        .map_err(|e| TrainError::io(&path, format!("does not fit the model: {e}")))
}

/// Marks the run finished.
pub(crate) fn finish(
    run: &RunFolder,
    logger: &mut SharedLogger,
    last_epoch: usize,
) -> Result<(), TrainError> {
    let _ = logger.finish(RunStatus::Finished);
    write_state(
        &run.path,
        &RunState {
            status: Status::Finished,
            config_hash: run.hash.clone(),
            last_epoch,
        },
    )
}
