//! End-to-end runs of the pipelines on a small synthetic image set (in process).

use std::path::{Path, PathBuf};

use oml_interfaces::MetricsReport;
use oml_interfaces::device::DeviceCount;
use oml_train::config::{PredictConfig, TrainConfig, ValidateConfig, parse_config};
use oml_train::history::History;
use oml_train::predict::{PredictOptions, predict};
use oml_train::rundir::{Status, read_state};
use oml_train::train::{TrainOptions, train};
use oml_train::validate::{ValidateOptions, validate};

/// Six classes of 28×28 grayscale images: class `c` is a bright 6×6 square at a class-specific
/// place, jittered, on noise. Classes 0–2 train, 3–5 validate (query and gallery).
fn synthetic_dataset(root: &Path, per_class: usize) {
    synthetic_classes(root, per_class, 3, 3);
}

/// `n_train` train classes then `n_val` validation classes (at most 8 in all).
fn synthetic_classes(root: &Path, per_class: usize, n_train: u32, n_val: u32) {
    let mut seed = 12345u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut csv = String::from("label,path,split,is_query,is_gallery\n");
    for c in 0..n_train + n_val {
        std::fs::create_dir_all(root.join(format!("images/{c}"))).unwrap();
        for i in 0..per_class {
            let (cx, cy) = (1 + (c % 4) * 6, 3 + (c / 4) * 12);
            let (jx, jy) = ((rnd() % 3) as u32, (rnd() % 3) as u32);
            let img = image::GrayImage::from_fn(28, 28, |x, y| {
                let inside = x >= cx + jx && x < cx + jx + 6 && y >= cy + jy && y < cy + jy + 6;
                let noise = (rnd() % 60) as u8;
                image::Luma([if inside { 195 + noise } else { noise }])
            });
            let rel = format!("images/{c}/{i:03}.png");
            img.save(root.join(&rel)).unwrap();
            let (split, qg) = if c < n_train {
                ("train", "")
            } else {
                ("validation", "True")
            };
            csv.push_str(&format!("{c},{rel},{split},{qg},{qg}\n"));
        }
    }
    std::fs::write(root.join("df.csv"), csv).unwrap();
}

fn train_yaml(root: &Path, logs: &Path, epochs: usize) -> String {
    format!(
        "
dataset_root: {root}
logs_root: {logs}
seed: 7
cache_size: 1000
max_epochs: {epochs}
valid_period: 1
log_images: true
bs_val: 32
sampler: {{name: balance, args: {{n_labels: 3, n_instances: 4}}}}
extractor: {{name: small_cnn, args: {{feat_dim: 8, channels: [4, 8, 8]}}}}
criterion: {{name: triplet_with_miner, args: {{margin: 0.2, need_logs: true, miner: {{name: hard_triplets}}}}}}
optimizer: {{name: adam, args: {{lr: 0.003}}}}
metric_args: {{cmc_top_k: [1, 5], map_top_k: [5], precision_top_k: [5]}}
",
        root = root.display(),
        logs = logs.display()
    )
}

fn read_report(path: &Path) -> MetricsReport {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn assert_reports_close(a: &MetricsReport, b: &MetricsReport, tol: f64) {
    let (fa, fb) = (a.flatten(), b.flatten());
    assert_eq!(
        fa.iter().map(|x| &x.0).collect::<Vec<_>>(),
        fb.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for ((k, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(
            (x - y).abs() <= tol || (x.is_nan() && y.is_nan()),
            "{k}: {x} vs {y}"
        );
    }
}

/// Burn's CPU backends seed one process-wide generator, so runs that must draw the same
/// initial weights cannot overlap with other runs of this test binary.
static SEQUENTIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SEQUENTIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The pipelines run on the tests' device (`OML_TEST_DEVICE`, else the default backend).
fn options(name: &str) -> TrainOptions {
    TrainOptions {
        config_name: name.into(),
        device: std::env::var(oml_interfaces::device::TEST_DEVICE_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty()),
        ..TrainOptions::default()
    }
}

#[test]
fn train_then_validate_and_predict_agree() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_dataset(&data, 12);
    let config: TrainConfig =
        parse_config(&train_yaml(&data, &dir.path().join("runs"), 2)).unwrap();
    let out = train(&config, options("synthetic")).unwrap();
    let run = &out.run_dir;

    // the run folder
    assert!(run.starts_with(dir.path().join("runs")));
    assert_eq!(read_state(run).unwrap().status, Status::Finished);
    assert!(run.join("config.yaml").is_file());
    assert!(out.best_checkpoint.is_file() && out.last_checkpoint.is_file());
    let history: History =
        serde_json::from_slice(&std::fs::read(run.join("history.json")).unwrap()).unwrap();
    assert_eq!(
        history.records.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let metrics = read_report(&run.join("metrics.json"));
    assert_eq!(metrics, history.records[2].report);
    assert_reports_close(&metrics, &out.last, 1e-12); // JSON keeps ~16 digits
    assert!(
        std::fs::read_dir(run.join("tensorboard"))
            .unwrap()
            .next()
            .is_some(),
        "no TensorBoard events"
    );
    let figures = run.join("figures");
    assert!(figures.is_dir(), "no figures in {}", run.display());
    let steps = walk(&figures);
    assert!(
        steps.iter().any(|p| p.to_string_lossy().contains("cmc_1")),
        "{steps:?}"
    );

    // validate the last checkpoint: the same report as training's last validation
    let vyaml = format!(
        "
dataset_root: {data}
bs_val: 7
extractor: {{name: small_cnn, args: {{feat_dim: 8, channels: [4, 8, 8]}}, weights: {w}}}
metric_args: {{cmc_top_k: [1, 5], map_top_k: [5], precision_top_k: [5]}}
save_dir: {save}
log_images: true
",
        data = data.display(),
        w = out.last_checkpoint.display(),
        save = dir.path().join("val").display()
    );
    let vconfig: ValidateConfig = parse_config(&vyaml).unwrap();
    let v = validate(&vconfig, ValidateOptions::default()).unwrap();
    assert_reports_close(&v.report, &metrics, 1e-6);
    assert_reports_close(
        &read_report(&dir.path().join("val/metrics.json")),
        &metrics,
        1e-6,
    );
    assert_eq!((v.n_queries, v.n_gallery), (36, 36));

    // predict every validation image; evaluating those embeddings gives the same report
    let pyaml = format!(
        "
data_dir: {data}/images
save_dir: {save}
bs: 5
extractor: {{name: small_cnn, args: {{feat_dim: 8, channels: [4, 8, 8]}}, weights: {w}}}
",
        data = data.display(),
        w = out.last_checkpoint.display(),
        save = dir.path().join("pred").display()
    );
    let pconfig: PredictConfig = parse_config(&pyaml).unwrap();
    let p = predict(&pconfig, PredictOptions::default()).unwrap();
    assert_eq!(p.paths.len(), 72);
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&p.predictions_json).unwrap()).unwrap();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for c in 3..6 {
        for i in 0..12 {
            let key = data
                .join(format!("images/{c}/{i:03}.png"))
                .display()
                .to_string();
            let v = json[&key].as_array().unwrap();
            rows.extend(v.iter().map(|x| x.as_f64().unwrap() as f32));
            labels.push(c as i64);
        }
    }
    let meta = oml_metrics::QueryGalleryMeta::new(labels, vec![true; 36], vec![true; 36]);
    let mconfig = oml_metrics::MetricsConfig {
        cmc_top_k: vec![1, 5],
        precision_top_k: vec![5],
        map_top_k: vec![5],
        ..Default::default()
    };
    let device = oml_interfaces::device::test_device();
    let e = oml_metrics::evaluate(
        &rows,
        8,
        &meta,
        &mconfig,
        &device,
        &oml_metrics::EvalHooks::default(),
    )
    .unwrap();
    assert_reports_close(&e.report, &metrics, 1e-5);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn an_interrupted_run_resumes_to_the_uninterrupted_result() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_dataset(&data, 8);
    let yaml = train_yaml(&data, &dir.path().join("runs"), 3);
    let config: TrainConfig = parse_config(&yaml).unwrap();

    let whole = train(
        &config,
        TrainOptions {
            resume: false,
            ..options("whole")
        },
    )
    .unwrap();

    let stopped = train(
        &config,
        TrainOptions {
            stop_after_epoch: Some(1),
            ..options("parts")
        },
    );
    let err = stopped.unwrap_err();
    assert!(
        matches!(err, oml_train::TrainError::Interrupted { epoch: 1, .. }),
        "{err}"
    );
    // What a run killed after its checkpoint had logged further: the resumed run rewinds it.
    let parts = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("parts")
        })
        .unwrap();
    for (file, junk) in [
        ("metrics.csv", "1.0,99,lost/after_checkpoint,0.5\n"),
        ("metrics.jsonl", "{\"step\":99}\n"),
    ] {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(parts.join(file))
            .unwrap();
        std::io::Write::write_all(&mut f, junk.as_bytes()).unwrap();
    }
    let resumed = train(&config, options("parts")).unwrap();
    assert_eq!(resumed.resumed_after, Some(1));
    assert_eq!(resumed.epochs_run, 2);
    assert_ne!(resumed.run_dir, whole.run_dir);
    // nothing lost: every validation is in the history, and the results are the uninterrupted run's
    let h: History =
        serde_json::from_slice(&std::fs::read(resumed.run_dir.join("history.json")).unwrap())
            .unwrap();
    assert_eq!(
        h.records.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // and the local log holds every row once: the same (step, name) rows as the whole run's
    let rows = |run: &Path| {
        let mut r: Vec<(u64, String)> = oml_logging::local::read_metrics_csv(run)
            .unwrap()
            .into_iter()
            .map(|r| (r.step, r.name))
            .collect();
        r.sort();
        r
    };
    assert_eq!(rows(&resumed.run_dir), rows(&whole.run_dir));
    let jsonl = |run: &Path| {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(jsonl(&resumed.run_dir), jsonl(&whole.run_dir));
    // Bit-identical on the CPU backends. On wgpu the resumed epochs drift from the
    // uninterrupted run (lavapipe: head weights ~1e-3 apart after one epoch; docs/backends.md),
    // so there only the bookkeeping above is checked.
    if oml_interfaces::cpu::is_host_backend(&oml_interfaces::device::test_device()) {
        assert_reports_close(&resumed.last, &whole.last, 1e-6);
        assert_eq!(resumed.best.map(|b| b.0), whole.best.map(|b| b.0));
    }

    // a finished run is not resumed: the next run starts afresh in a new folder
    let again = train(
        &config,
        TrainOptions {
            stop_after_epoch: Some(0),
            ..options("parts")
        },
    )
    .unwrap_err();
    assert!(
        matches!(again, oml_train::TrainError::Interrupted { epoch: 0, .. }),
        "{again}"
    );
}

/// Every section is checked before the run folder exists: a bad one is an error naming its
/// key, and nothing is written under `logs_root`.
#[test]
fn config_errors_name_the_key_before_anything_is_written() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_dataset(&data, 4);
    let logs = dir.path().join("runs");
    let yaml = train_yaml(&data, &logs, 1);
    for (bad, needles) in [
        (
            yaml.replace("lr: 0.003", "lr: 0.003, momentum: 0.9"),
            &["optimizer.args", "momentum"][..],
        ),
        (
            yaml.replace("n_instances: 4", "n_instance: 4"),
            &["sampler", "n_instance"],
        ),
        (
            format!("{yaml}metric_for_checkpointing: OVERALL/cmc/10\n"),
            &["metric_for_checkpointing", "OVERALL/cmc/1"],
        ),
        (
            format!("{yaml}logger: {{name: mlflow, args: {{log_model: true}}}}\n"),
            &["logger.args.log_model"],
        ),
        (
            format!("{yaml}scheduling: {{scheduler: {{name: step, args: {{step_sise: 2}}}}}}\n"),
            &["scheduling.scheduler.args", "step_sise"],
        ),
        (
            yaml.replace("margin: 0.2,", "margin: 0.2, reduction: avg,"),
            &["criterion", "`reduction` = avg"],
        ),
        (
            format!("{yaml}num_workers: 1000000\n"),
            &["num_workers", "1000000"],
        ),
    ] {
        let config: TrainConfig = parse_config(&bad).unwrap();
        let e = train(&config, options("x")).unwrap_err().to_string();
        for needle in needles {
            assert!(e.contains(needle), "{needle}: {e}");
        }
        assert!(!logs.exists(), "{e}: a run folder was created");
    }
}

/// The float tensors of a burnpack file, by parameter path.
fn record_tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let reader = burn::store::burn_pack::Reader::from_file(path).unwrap();
    reader
        .tensor_names()
        .into_iter()
        .map(|n| {
            let bytes = reader.tensor_data(n).unwrap();
            (
                n.to_string(),
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            )
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn frozen_epochs_leave_the_backbone_unchanged() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_dataset(&data, 8);
    let yaml = format!(
        "{}freeze_n_epochs: 1\nlogs_folder: frozen\n",
        train_yaml(&data, &dir.path().join("runs"), 2)
    );
    let config: TrainConfig = parse_config(&yaml).unwrap();
    let e = train(
        &config,
        TrainOptions {
            stop_after_epoch: Some(1),
            ..options("f")
        },
    )
    .unwrap_err();
    assert!(
        matches!(e, oml_train::TrainError::Interrupted { epoch: 1, .. }),
        "{e}"
    );
    let ckpt = dir.path().join("runs/frozen/checkpoints");
    let after1 = record_tensors(&ckpt.join("epoch-1/model.bpk"));

    // the initial weights: the pipeline seeds the device right before building the extractor
    let device = oml_interfaces::device::test_device();
    device.seed(config.seed);
    let spec = oml_train::extractor::parse(&config.extractor, "extractor").unwrap();
    let init = spec.build(&device).unwrap();
    let dir0 = tempfile::tempdir().unwrap();
    init.save(&dir0.path().join("init.bpk")).unwrap();
    let init = record_tensors(&dir0.path().join("init.bpk"));

    let key = |k: &str| format!("extractor.SmallCnn.{k}");
    for k in [
        "conv1.weight",
        "conv3.bias",
        "norms.0.gamma",
        "norms.2.running_mean",
    ] {
        assert_eq!(
            max_diff(&after1[&key(k)], &init[k]),
            0.0,
            "{k} changed in a frozen epoch"
        );
    }
    assert!(
        max_diff(&after1[&key("head.weight")], &init["head.weight"]) > 0.0,
        "the head did not train"
    );
    // the epoch's folder also holds the extractor as `--weights` loads it, and the run's
    // state names the epoch: what a killed run leaves usable
    let weights = record_tensors(&ckpt.join("epoch-1/weights.bpk"));
    for k in ["conv1.weight", "head.weight"] {
        assert_eq!(max_diff(&weights[k], &after1[&key(k)]), 0.0, "{k}");
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt.join("../state.json")).unwrap()).unwrap();
    assert_eq!(state["last_epoch"], 1, "{state}");

    train(&config, options("f")).unwrap();
    let after2 = record_tensors(&ckpt.join("epoch-2/model.bpk"));
    assert!(
        max_diff(&after2[&key("conv1.weight")], &init["conv1.weight"]) > 0.0,
        "the backbone did not train after unfreezing"
    );
}

#[test]
fn arcface_weights_are_trained_and_checkpointed() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_dataset(&data, 8);
    let yaml = train_yaml(&data, &dir.path().join("runs"), 2).replace(
        "criterion: {name: triplet_with_miner, args: {margin: 0.2, need_logs: true, miner: {name: hard_triplets}}}",
        "criterion: {name: arcface, args: {in_features: 8, num_classes: 3, m: 0.5, s: 16}}\nlogs_folder: arc",
    );
    let config: TrainConfig = parse_config(&yaml).unwrap();
    train(
        &config,
        TrainOptions {
            stop_after_epoch: Some(1),
            ..options("a")
        },
    )
    .unwrap_err();
    let ckpt = dir.path().join("runs/arc/checkpoints");
    let w1 = record_tensors(&ckpt.join("epoch-1/model.bpk"));
    let name = w1
        .keys()
        .find(|k| k.starts_with("criterion."))
        .cloned()
        .expect("the criterion's weights are checkpointed");
    let out = train(&config, options("a")).unwrap();
    let w2 = record_tensors(&ckpt.join("epoch-2/model.bpk"));
    assert!(
        max_diff(&w1[&name], &w2[&name]) > 0.0,
        "{name} did not change"
    );
    // the exported extractor has no criterion weights
    assert!(
        record_tensors(&out.last_checkpoint)
            .keys()
            .all(|k| !k.contains("criterion"))
    );
}

#[test]
fn two_devices_train_data_parallel() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_classes(&data, 8, 4, 2);
    // 4 labels, 2 per batch: two batches per epoch, one per device
    let yaml = train_yaml(&data, &dir.path().join("runs"), 2).replace("n_labels: 3", "n_labels: 2")
        + "devices: 2\n";
    let config: TrainConfig = parse_config(&yaml).unwrap();
    let backend = std::env::var(oml_interfaces::device::TEST_DEVICE_ENV).ok();
    let asked = DeviceCount::Count(2);
    if let Err(e) = oml_interfaces::device::select_devices(backend.as_deref(), asked) {
        // A GPU backend with one GPU (lavapipe): two devices are refused before anything runs,
        // not trained as two copies on the one GPU.
        assert!(
            matches!(e, oml_interfaces::DeviceError::TooMany { asked: 2, .. }),
            "{e}"
        );
        let err = train(&config, options("two")).unwrap_err().to_string();
        assert!(
            err.contains("2 `") && err.contains("this machine has"),
            "{err}"
        );
        assert!(!dir.path().join("runs").exists());
        return;
    }
    let out = train(&config, options("two")).unwrap();
    let h: History =
        serde_json::from_slice(&std::fs::read(out.run_dir.join("history.json")).unwrap()).unwrap();
    assert_eq!(
        h.records.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(out.last.flatten().iter().all(|(_, v)| v.is_finite()));
    // both batches of each epoch were trained: 2 epochs × 2 devices
    let csv = std::fs::read_to_string(out.run_dir.join("metrics.csv")).unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.contains(",triplet_loss,")).count(),
        4,
        "{csv}"
    );
}

#[test]
fn a_trained_reranker_is_validated_the_same_way_by_oml_validate() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_dataset(&data, 10);
    // a frozen extractor: the last checkpoint of a short training
    let config: TrainConfig =
        parse_config(&train_yaml(&data, &dir.path().join("runs"), 1)).unwrap();
    let extractor = train(&config, options("extractor"))
        .unwrap()
        .last_checkpoint;
    let yaml = format!(
        "
dataset_root: {data}
logs_root: {runs}
logs_folder: post
embeddings_cache_dir: {cache}
seed: 5
max_epochs: 3
valid_period: 1
batch_size_inference: 16
extractor: {{name: small_cnn, args: {{feat_dim: 8, channels: [4, 8, 8]}}, weights: {w}}}
postprocessor:
  name: pairwise_reranker
  args:
    top_n: 3
    batch_size: 11
    pairwise_model: {{name: linear_siamese, args: {{feat_dim: 8, identity_init: true}}}}
sampler: {{name: balance, args: {{n_labels: 3, n_instances: 4}}}}
optimizer: {{name: sgd, args: {{lr: 0.05}}}}
metric_args: {{cmc_top_k: [1, 3], map_top_k: [3], precision_top_k: [3]}}
",
        data = data.display(),
        runs = dir.path().join("runs").display(),
        cache = dir.path().join("cache").display(),
        w = extractor.display()
    );
    let pconfig: oml_train::postprocessor::PostprocessorConfig = parse_config(&yaml).unwrap();
    let out = oml_train::postprocessor::train_postprocessor(&pconfig, options("post")).unwrap();
    let h: History =
        serde_json::from_slice(&std::fs::read(out.run_dir.join("history.json")).unwrap()).unwrap();
    assert_eq!(
        h.records.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // epoch 0 is the extractor alone: oml validate without post-processor
    let vyaml = format!(
        "dataset_root: {}\nextractor: {{name: small_cnn, args: {{feat_dim: 8, channels: [4, 8, 8]}}, weights: {}}}\nmetric_args: {{cmc_top_k: [1, 3], map_top_k: [3], precision_top_k: [3]}}\n",
        data.display(),
        extractor.display()
    );
    let plain = validate(&parse_config(&vyaml).unwrap(), ValidateOptions::default()).unwrap();
    assert_reports_close(&plain.report, &out.initial, 1e-9);
    // the last epoch: oml validate re-ranking with the trained model (scores computed anew)
    let with_post = format!(
        "{vyaml}postprocessor: {{name: pairwise_reranker, args: {{top_n: 3, batch_size: 7, pairwise_model: {{name: linear_siamese, args: {{feat_dim: 8, identity_init: false}}, weights: {}}}}}}}\n",
        out.last_checkpoint.display()
    );
    let reranked = validate(
        &parse_config(&with_post).unwrap(),
        ValidateOptions::default(),
    )
    .unwrap();
    assert_reports_close(&reranked.report, &out.last, 1e-5);
    assert!(
        std::fs::read_dir(dir.path().join("cache")).unwrap().count() == 2,
        "train and validation embeddings are cached"
    );
    // a cache file of other inputs (here: 2 rows) is named, not used, not overwritten
    let cached = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("emb_val"))
        .unwrap();
    let bytes = std::fs::read(&cached).unwrap();
    oml_train::predict::write_npy_f32(&cached, 2, 8, &[0.5; 16]).unwrap();
    let again: oml_train::postprocessor::PostprocessorConfig =
        parse_config(&yaml.replace("logs_folder: post", "logs_folder: post2")).unwrap();
    let e = oml_train::postprocessor::train_postprocessor(&again, options("post"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&cached.display().to_string()) && e.contains("2 embeddings"),
        "{e}"
    );
    assert!(!dir.path().join("runs/post2").exists());
    std::fs::write(&cached, bytes).unwrap();
    // the projection trained away from its identity initialisation
    let proj = &record_tensors(&out.last_checkpoint)["proj.weight"];
    let eye: Vec<f32> = (0..64)
        .map(|i| if i % 9 == 0 { 1.0 } else { 0.0 })
        .collect();
    // Untrained, it stays the identity exactly; how far one short run moves it varies from run
    // to run (4e-5 to 1.4e-4 in four runs of this test binary).
    assert!(max_diff(proj, &eye) > 1e-6, "{proj:?}");
}

/// A broken image stops training with an error naming the file and its CSV row: in the train
/// split (read by the Learner's loader) and in the validation split (the epoch-0 metrics).
/// Before, it trained on a black stand-in without a word.
#[test]
fn broken_images_stop_training_naming_the_file() {
    let _serial = one_at_a_time();
    for split_dir in ["images/0", "images/3"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        synthetic_classes(&data, 4, 3, 2);
        let broken = data.join(split_dir).join("001.png");
        std::fs::write(&broken, b"not a png").unwrap();
        // 3 train labels × 4 images: every train image is in the epoch's one batch
        let yaml = train_yaml(&data, &dir.path().join("runs"), 1);
        let config: TrainConfig = parse_config(&yaml).unwrap();
        let e = match train(&config, options("broken")) {
            Ok(o) => panic!(
                "{split_dir}: trained anyway; {}",
                std::fs::read_to_string(o.run_dir.join("experiment.log")).unwrap_or_default()
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains(&format!("{split_dir}/001.png")) && e.contains("row "),
            "{split_dir}: {e}"
        );
        // the explicit opt-in trains without the broken row
        let skip: TrainConfig = parse_config(&format!("{yaml}skip_broken_images: true\n")).unwrap();
        let out = train(&skip, options("skip")).unwrap_or_else(|e| panic!("{split_dir}: {e}"));
        assert!(out.last.flatten().iter().all(|(_, v)| v.is_finite()));
    }
}

/// One training step of a real extractor (resnet18: forward in training mode, triplet loss with
/// the hard miner, backward) gives the same loss and gradients on the tests' device as on Flex
/// (on wgpu in CI's second run; Flex against itself otherwise).
#[test]
fn a_resnet_training_step_matches_flex() {
    use burn::prelude::*;
    use oml_interfaces::{Criterion, Extractor, Reduction};
    use oml_mining::{HardTripletsMiner, TripletLossWithMiner};
    use oml_models::{ResnetArch, ResnetExtractorConfig};

    let flex = oml_interfaces::device::device_by_name("flex")
        .unwrap()
        .autodiff();
    let test = oml_interfaces::device::test_device().autodiff();
    // Seeded weights: with near-tied distances the two devices' hard miners could pick
    // different triplets (seeds 0-7 gave relative differences of 2.4e-5 to 5.6e-5 on lavapipe).
    flex.seed(0);
    let model = ResnetExtractorConfig::new(ResnetArch::Resnet18)
        .init(&flex)
        .unwrap()
        .train();
    let criterion =
        TripletLossWithMiner::new(Some(0.2), HardTripletsMiner, Reduction::Mean, false).unwrap();
    let labels = [0i64, 0, 1, 1, 2, 2];
    let pixels: Vec<f32> = (0..6 * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
        .collect();
    let step = |model: &oml_models::ResnetExtractor, device: &Device| {
        let images =
            Tensor::<4>::from_data(TensorData::new(pixels.clone(), [6, 3, 32, 32]), device);
        let out = criterion.forward(model.extract(images), &labels).unwrap();
        let grads = out.loss.backward();
        let read = |w: &burn::module::Param<Tensor<4>>| {
            w.grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        (
            out.loss.into_scalar::<f32>(),
            read(&model.model.conv1.weight),
            read(&model.model.layer4[1].conv2.weight),
        )
    };
    let on_test = model.clone().fork(&test);
    let (loss_f, stem_f, last_f) = step(&model, &flex);
    let (loss_t, stem_t, last_t) = step(&on_test, &test);
    assert!(loss_f > 0.0, "a zero loss checks no gradient");
    assert!(
        (loss_f - loss_t).abs() <= 1e-4 * loss_f.abs().max(1.0),
        "loss {loss_f} vs {loss_t}"
    );
    for (name, a, b) in [
        ("conv1", &stem_f, &stem_t),
        ("layer4.1.conv2", &last_f, &last_t),
    ] {
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let d: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        let relative = norm(&d) / norm(a);
        assert!(scale > 0.0, "{name}: no gradient");
        assert!(
            relative <= 1e-3 && diff <= 1e-3 * scale,
            "{name}: gradients differ by {diff} at most (largest {scale}), {relative} in norm"
        );
    }
}
