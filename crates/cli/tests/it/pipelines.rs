//! End-to-end runs of `oml train`, `oml validate`, `oml predict` and `oml eval` through the
//! binary, on a few hundred Fashion-MNIST images of the repository's `data/fashion-mnist`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oml::interfaces::MetricsReport;
// The trainer's own rule (model, optim and scheduler records all on disk): a test that counted
// one kind alone raced the checkpointer, which writes the three one after the other.
use oml::train::checkpoint::complete_epochs;

const OML: &str = env!("CARGO_BIN_EXE_oml");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str], cwd: &Path) -> Output {
    let out = Command::new(OML)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run oml");
    assert!(
        out.status.success(),
        "oml {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run_folder(stdout: &[u8]) -> PathBuf {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("run folder: "))
        .unwrap_or_else(|| panic!("no run folder in:\n{text}"));
    PathBuf::from(line.trim())
}

fn read_report(path: &Path) -> MetricsReport {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn assert_close(a: &MetricsReport, b: &MetricsReport, tol: f64) {
    let (fa, fb) = (a.flatten(), b.flatten());
    assert_eq!(
        fa.iter().map(|x| &x.0).collect::<Vec<_>>(),
        fb.iter().map(|x| &x.0).collect::<Vec<_>>(),
        "{a:?} vs {b:?}"
    );
    for ((k, x), (_, y)) in fa.iter().zip(&fb) {
        assert!((x - y).abs() <= tol, "{k}: {x} vs {y}");
    }
}

/// A training config on the first `limit` images of the shipped split (classes 0–4 train,
/// 5–9 validate), converted into `dir/data` on first use.
fn train_config(dir: &Path, limit: usize, epochs: usize, extra: &str) -> PathBuf {
    let text = format!(
        "
seed: 3
dataset_root: {data}
prepare_data: {{name: fashion_mnist, args: {{source: {src}, limit: {limit}}}}}
cache_size: 2000
max_epochs: {epochs}
valid_period: 1
log_images: true
bs_val: 64
sampler: {{name: balance, args: {{n_labels: 5, n_instances: 8}}}}
extractor: {{name: small_cnn, args: {{feat_dim: 16, channels: [8, 16, 16]}}}}
criterion: {{name: triplet_with_miner, args: {{margin: 0.2, need_logs: true, miner: {{name: hard_triplets}}}}}}
optimizer: {{name: adam, args: {{lr: 0.001}}}}
metric_args: {{cmc_top_k: [1, 5], precision_top_k: [5], map_top_k: [5], pcf_variance: [0.5]}}
logs_root: {runs}
{extra}
",
        data = dir.join("data").display(),
        src = repo().join("data/fashion-mnist").display(),
        runs = dir.join("runs").display(),
    );
    let path = dir.join("train.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn write_npy(path: &Path, rows: usize, dim: usize, data: &[f32]) {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    header.push_str(&" ".repeat((64 - (11 + header.len()) % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    data.iter()
        .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn train_validate_predict_and_eval_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = train_config(dir, 300, 2, "");
    let out = run(&["train", config.to_str().unwrap(), "--device", "cpu"], dir);
    let run_dir = run_folder(&out.stdout);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("before training:") && stdout.contains("OVERALL/cmc/1"),
        "{stdout}"
    );

    // the run folder: config copy, logs, checkpoints, figures, metrics.json
    for f in [
        "config.yaml",
        "state.json",
        "history.json",
        "metrics.json",
        "experiment.log",
        "checkpoints/best.bpk",
        "checkpoints/last.bpk",
    ] {
        assert!(
            run_dir.join(f).is_file(),
            "missing {f} in {}",
            run_dir.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(run_dir.join("config.yaml")).unwrap(),
        std::fs::read_to_string(&config).unwrap()
    );
    // The application log: Burn's INFO records of the run in its experiment.log (through the
    // binary's own subscriber), none on stderr, which only gets warnings and errors.
    let log = std::fs::read_to_string(run_dir.join("experiment.log")).unwrap();
    assert!(log.contains("Executing training step for epoch 1"), "{log}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Executing training step") && !stderr.contains("experiment logger"),
        "{stderr}"
    );
    let tb = std::fs::read_dir(run_dir.join("tensorboard"))
        .unwrap()
        .flatten()
        .next()
        .expect("a TensorBoard event file");
    assert!(
        tb.file_name()
            .to_string_lossy()
            .starts_with("events.out.tfevents")
    );
    let grids = run_dir.join("figures/image_logs/top 5 worst by OVERALL_cmc_1");
    assert!(
        grids.join("step_000002.png").is_file(),
        "no worst-queries grid in {}",
        grids.display()
    );
    let trained = read_report(&run_dir.join("metrics.json"));

    // oml validate on the last checkpoint gives training's final report
    let root = dir.join("data");
    let vconfig = dir.join("validate.yaml");
    std::fs::write(
        &vconfig,
        format!(
            "dataset_root: {}\nbs_val: 37\nextractor: {{name: small_cnn, args: {{feat_dim: 16, channels: [8, 16, 16]}}, weights: {}}}\nmetric_args: {{cmc_top_k: [1, 5]}}\n",
            root.display(),
            run_dir.join("checkpoints/last.bpk").display()
        ),
    )
    .unwrap();
    let v = run(&["validate", vconfig.to_str().unwrap(), "--json"], dir);
    let validated: MetricsReport = serde_json::from_slice(&v.stdout).unwrap();
    assert_close(&validated, &trained, 1e-6);

    // oml predict embeds every image; oml eval of those embeddings gives the same report
    let pconfig = dir.join("predict.yaml");
    std::fs::write(
        &pconfig,
        format!(
            "data_dir: {}\nsave_dir: {}\nbs: 50\nextractor: {{name: small_cnn, args: {{feat_dim: 16, channels: [8, 16, 16]}}, weights: {}}}\n",
            root.join("images").display(),
            dir.join("pred").display(),
            run_dir.join("checkpoints/last.bpk").display()
        ),
    )
    .unwrap();
    run(&["predict", pconfig.to_str().unwrap()], dir);
    let predictions: HashMap<String, Vec<f32>> =
        serde_json::from_slice(&std::fs::read(dir.join("pred/predictions.json")).unwrap()).unwrap();
    assert_eq!(predictions.len(), 300);
    let paths_csv = std::fs::read_to_string(dir.join("pred/paths.csv")).unwrap();
    assert_eq!(paths_csv.lines().count(), 301);
    let mut reader = csv::Reader::from_path(root.join("df.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let path_col = headers.iter().position(|h| h == "path").unwrap();
    let mut aligned = Vec::new();
    let mut rows = 0;
    for rec in reader.records() {
        let rec = rec.unwrap();
        let key = root.join(&rec[path_col]).display().to_string();
        aligned.extend_from_slice(
            predictions
                .get(&key)
                .unwrap_or_else(|| panic!("no prediction for {key}")),
        );
        rows += 1;
    }
    write_npy(&dir.join("aligned.npy"), rows, 16, &aligned);
    let report = dir.join("eval.json");
    run(
        &[
            "eval",
            "--embeddings",
            dir.join("aligned.npy").to_str().unwrap(),
            "--dataset",
            root.join("df.csv").to_str().unwrap(),
            "--format",
            "json",
            "--output",
            report.to_str().unwrap(),
        ],
        dir,
    );
    assert_close(&read_report(&report), &trained, 1e-5);

    // oml train-postprocessor: a re-ranker over the same frozen extractor
    let post = dir.join("post.yaml");
    std::fs::write(
        &post,
        format!(
            "dataset_root: {data}\nlogs_root: {runs}\nmax_epochs: 1\nbatch_size_inference: 64\n\
             extractor: {{name: small_cnn, args: {{feat_dim: 16, channels: [8, 16, 16]}}, weights: {w}}}\n\
             postprocessor: {{name: pairwise_reranker, args: {{top_n: 3, pairwise_model: {{name: linear_siamese, args: {{feat_dim: 16, identity_init: true}}}}}}}}\n\
             sampler: {{name: balance, args: {{n_labels: 5, n_instances: 4}}}}\n\
             optimizer: {{name: adam, args: {{lr: 0.001}}}}\nmetric_args: {{cmc_top_k: [1, 5]}}\n",
            data = root.display(),
            runs = dir.join("post_runs").display(),
            w = run_dir.join("checkpoints/last.bpk").display()
        ),
    )
    .unwrap();
    let out = run(&["train-postprocessor", post.to_str().unwrap()], dir);
    let post_dir = run_folder(&out.stdout);
    assert!(
        post_dir.join("checkpoints/best.bpk").is_file() && post_dir.join("metrics.json").is_file()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("re-ranked"), "{stdout}");

    // --weights overrides the config's weights
    let v2 = run(
        &[
            "validate",
            vconfig.to_str().unwrap(),
            "--json",
            "--weights",
            run_dir.join("checkpoints/best.bpk").to_str().unwrap(),
        ],
        dir,
    );
    let best: MetricsReport = serde_json::from_slice(&v2.stdout).unwrap();
    let best_json = run_dir.join("metrics_best.json");
    assert_close(&best, &read_report(&best_json), 1e-6);
}

#[test]
fn killed_training_resumes_from_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let epochs = 8;
    // bigger inputs so an epoch takes long enough to be killed in the middle of one
    let config = train_config(
        dir,
        200,
        epochs,
        "transforms_train: {name: norm_resize_torch, args: {im_size: 56}}\ntransforms_val: {name: norm_resize_torch, args: {im_size: 56}}\nlogs_folder: killed\n",
    );
    let run_dir = dir.join("runs/killed");

    let mut child = Command::new(OML)
        .args(["train", config.to_str().unwrap()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if complete_epochs(&run_dir.join("checkpoints"))
            .last()
            .is_some_and(|&e| e >= 2)
        {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("oml train exited ({status}) before it could be killed");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "no checkpoint after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = *complete_epochs(&run_dir.join("checkpoints"))
        .last()
        .unwrap();
    assert!(done < epochs, "training finished before it was killed");

    let out = run(&["train", config.to_str().unwrap()], dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(run_folder(&out.stdout), run_dir);
    let resumed_after: usize = stdout
        .lines()
        .find_map(|l| l.split(" after epoch ").nth(1))
        .unwrap_or_else(|| panic!("did not resume:\n{stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        resumed_after >= 2 && resumed_after >= done,
        "resumed after {resumed_after}, {done} were complete"
    );
    assert!(
        !stdout.contains("before training:"),
        "the untrained model was validated again:\n{stdout}"
    );
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("history.json")).unwrap()).unwrap();
    let epochs_seen: Vec<u64> = history["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs_seen, (0..=epochs as u64).collect::<Vec<_>>());
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["status"], "finished");
    assert_logs_hold_each_step_once(&run_dir, epochs as u64);

    // nothing lost: the same result as a run that was never interrupted
    let whole = run(
        &[
            "train",
            config.to_str().unwrap(),
            "--run-dir",
            dir.join("whole").to_str().unwrap(),
        ],
        dir,
    );
    assert_eq!(run_folder(&whole.stdout), dir.join("whole"));
    assert_close(
        &read_report(&run_dir.join("metrics.json")),
        &read_report(&dir.join("whole/metrics.json")),
        1e-6,
    );
}

#[test]
fn config_errors_name_the_key_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = train_config(dir, 100, 1, "optimizer_extra: 1\n");
    let out = Command::new(OML)
        .args(["train", config.to_str().unwrap()])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("optimizer_extra") && err.contains("train.yaml"),
        "{err}"
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("optimizer_extra: 1\n", "")
        .replace("max_epochs: 1", "max_epochs: one");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(OML)
        .args(["train", config.to_str().unwrap()])
        .current_dir(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("max_epochs"), "{err}");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("max_epochs: one", "max_epochs: 1"),
    )
    .unwrap();
    let out = Command::new(OML)
        .args(["train", config.to_str().unwrap(), "--device", "tpu"])
        .current_dir(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("`tpu`"), "{err}");

    // a bad value inside a registry section's `args` is named by its full key path
    let good = std::fs::read_to_string(&config).unwrap();
    for (from, to, key, value) in [
        ("margin: 0.2", "margin: big", "criterion.args.margin", "big"),
        ("n_labels: 5", "n_labels: -2", "sampler.args.n_labels", "-2"),
    ] {
        std::fs::write(&config, good.replace(from, to)).unwrap();
        let out = Command::new(OML)
            .args(["train", config.to_str().unwrap()])
            .current_dir(dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(key) && err.contains(value),
            "{to}: {err}"
        );
    }

    // an output folder that is a file is named before any work
    let file = dir.join("taken");
    std::fs::write(&file, "mine").unwrap();
    let vconfig = dir.join("validate.yaml");
    std::fs::write(
        &vconfig,
        format!(
            "dataset_root: {}\nsave_dir: {}\nextractor: {{name: small_cnn, args: {{feat_dim: 16, channels: [8, 16, 16]}}}}\n",
            dir.join("data").display(),
            file.display()
        ),
    )
    .unwrap();
    let out = Command::new(OML)
        .args(["validate", vconfig.to_str().unwrap()])
        .current_dir(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("save_dir") && err.contains("is a file"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
}

/// stdout as a pipe whose reading end is already closed (what `| head -1` leaves behind).
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Stdio::from(writer)
}

/// A closed stdout never panics or stops a run: `oml train` finishes its run folder and exits
/// 141 quietly, as a tool killed by SIGPIPE would; a full stdout (`> /dev/full`) is an error
/// that names stdout, after the run folder is complete.
#[test]
fn closed_or_full_stdout_leaves_the_run_complete() {
    let dir = tempfile::tempdir().unwrap();
    let config = train_config(dir.path(), 200, 1, "");
    let mut outputs = vec![("closed pipe", closed_pipe())];
    if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
        outputs.push(("/dev/full", Stdio::from(full)));
    }
    for (what, stdout) in outputs {
        let run_dir = dir.path().join(format!("run_{}", what.replace('/', "_")));
        let out = Command::new(OML)
            .args(["train", config.to_str().unwrap(), "--run-dir"])
            .arg(&run_dir)
            .current_dir(dir.path())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .expect("run oml");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{what}: {err}");
        if what == "closed pipe" {
            assert_eq!(out.status.code(), Some(141), "{what}: {err}");
        } else {
            assert!(
                !out.status.success() && err.contains("stdout"),
                "{what}: {err}"
            );
        }
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run_dir.join("state.json")).unwrap()).unwrap();
        assert_eq!(state["status"], "finished", "{what}");
        assert!(run_dir.join("checkpoints/best.bpk").is_file(), "{what}");
        assert!(run_dir.join("metrics.json").is_file(), "{what}");
    }
}

/// The files under `dir` whose names end with `suffix`, recursively.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .map(|e| e.path().to_path_buf())
        .collect()
}

fn last_epoch_in_state(run_dir: &Path) -> u64 {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("state.json")).unwrap()).unwrap();
    state["last_epoch"].as_u64().unwrap()
}

/// Every scalar of a resumed run's logs appears once per step, in `metrics.csv` and in its one
/// TensorBoard event file, and validation reached every epoch `0..=epochs` in both.
fn assert_logs_hold_each_step_once(run_dir: &Path, epochs: u64) {
    use oml::logging::tensorboard::{EventWhat, ValueKind, event_files, read_event_file};
    let check = |source: &str, pairs: Vec<(String, u64)>| {
        let mut seen = std::collections::BTreeSet::new();
        for pair in &pairs {
            assert!(seen.insert(pair), "{source}: {pair:?} logged twice");
        }
        let validated: Vec<u64> = pairs
            .iter()
            .filter(|(tag, _)| tag.ends_with("cmc/1"))
            .map(|(_, step)| *step)
            .collect();
        assert_eq!(validated, (0..=epochs).collect::<Vec<_>>(), "{source}");
    };
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    let rows = csv.lines().skip(1).map(|line| {
        let fields: Vec<&str> = line.split(',').collect();
        (fields[2].to_string(), fields[1].parse().unwrap())
    });
    check("metrics.csv", rows.collect());
    let files = event_files(&run_dir.join("tensorboard")).unwrap();
    assert_eq!(files.len(), 1, "one event file per run: {files:?}");
    let events = read_event_file(&files[0]).unwrap();
    let scalars = events.iter().flat_map(|e| match &e.what {
        EventWhat::Summary(values) => values
            .iter()
            .filter(|v| matches!(v.value, ValueKind::Scalar(_)))
            .map(|v| (v.tag.clone(), e.step as u64))
            .collect(),
        _ => Vec::new(),
    });
    check("tensorboard", scalars.collect());
}

#[test]
fn repeated_kill_9_never_loses_a_complete_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let epochs = 30;
    // bigger inputs so that epochs take long enough to be killed in
    let config = train_config(
        dir,
        150,
        epochs,
        "transforms_train: {name: norm_resize_torch, args: {im_size: 48}}\ntransforms_val: {name: norm_resize_torch, args: {im_size: 48}}\nlogs_folder: kills\n",
    );
    let run_dir = dir.join("runs/kills");
    let ckpt = run_dir.join("checkpoints");
    // the data are converted once, so every run below starts alike
    run(
        &["train", config.to_str().unwrap(), "--stop-after-epoch", "0"],
        dir,
    );

    let (mut newest, mut kills, mut validated, mut finished) = (0, 0, false, false);
    let (mut delay_ms, mut lcg) = (100u64, 42u64);
    while kills < 12 {
        let mut child = Command::new(OML)
            .args(["train", config.to_str().unwrap()])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "oml train failed ({status})");
            finished = true; // finished before the kill
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;

        let complete = complete_epochs(&ckpt);
        let now = complete.last().copied().unwrap_or(0);
        eprintln!("kill {kills} after {delay_ms} ms: complete epochs {complete:?}");
        assert!(
            now >= newest,
            "epoch {newest} was complete, now only {complete:?}"
        );
        newest = now;
        // state.json is written right after an epoch is published: never ahead of the disk
        assert!(last_epoch_in_state(&run_dir) <= now as u64);
        for e in &complete {
            for f in ["weights.bpk", "logs.json"] {
                assert!(
                    ckpt.join(format!("epoch-{e}/{f}")).is_file(),
                    "epoch {e}: no {f}"
                );
            }
        }
        // a killed run leaves weights `oml validate --weights` loads
        if now > 0 && !validated {
            let vconfig = dir.join("validate.yaml");
            std::fs::write(
                &vconfig,
                format!(
                    "dataset_root: {}\nextractor: {{name: small_cnn, args: {{feat_dim: 16, channels: [8, 16, 16]}}}}\nmetric_args: {{cmc_top_k: [1]}}\n",
                    dir.join("data").display()
                ),
            )
            .unwrap();
            let weights = ckpt.join(format!("epoch-{now}/weights.bpk"));
            run(
                &[
                    "validate",
                    vconfig.to_str().unwrap(),
                    "--weights",
                    weights.to_str().unwrap(),
                ],
                dir,
            );
            validated = true;
        }
        // kills land at different moments: before, during and after checkpoint writes
        lcg = lcg
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        delay_ms = 100 + (lcg >> 33) % 700;
    }
    assert!(kills > 0, "every run finished before it could be killed");
    // otherwise every kill landed before the first checkpoint and nothing above was tested
    assert!(
        newest > 0,
        "no kill came after a complete epoch ({kills} kills)"
    );
    if !finished {
        let out = run(&["train", config.to_str().unwrap()], dir);
        assert_eq!(run_folder(&out.stdout), run_dir);
    }
    assert!(files_ending(&ckpt, ".partial").is_empty());
    assert!(files_ending(&ckpt, ".tmp").is_empty());
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("history.json")).unwrap()).unwrap();
    let epochs_seen: Vec<u64> = history["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(
        epochs_seen,
        (0..=epochs as u64).collect::<Vec<_>>(),
        "after {kills} kills"
    );
    assert_eq!(last_epoch_in_state(&run_dir), epochs as u64);
    assert_logs_hold_each_step_once(&run_dir, epochs as u64);
    // and the result is an uninterrupted run's
    let whole = dir.join("whole");
    run(
        &[
            "train",
            config.to_str().unwrap(),
            "--run-dir",
            whole.to_str().unwrap(),
        ],
        dir,
    );
    assert_close(
        &read_report(&run_dir.join("metrics.json")),
        &read_report(&whole.join("metrics.json")),
        1e-6,
    );
}

#[cfg(unix)]
#[test]
fn a_full_disk_stops_training_naming_the_file_and_keeps_the_last_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // a model whose records are far larger than any log or figure the run writes
    let config = train_config(dir, 100, 3, "logs_folder: full\n")
        .to_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "feat_dim: 16, channels: [8, 16, 16]",
        "feat_dim: 128, channels: [64, 128, 128]",
    );
    std::fs::write(&config, text).unwrap();
    run(&["train", &config, "--stop-after-epoch", "1"], dir);
    let run_dir = dir.join("runs/full");
    let ckpt = run_dir.join("checkpoints");
    let weights = std::fs::metadata(ckpt.join("epoch-1/weights.bpk"))
        .unwrap()
        .len();

    // the disk "fills" at half the model's size: writes past it fail (EFBIG, as ENOSPC would)
    let limit_kib = weights / 1024 / 2;
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" train \"$1\""),
            OML,
            &config,
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "training went on:\n{stderr}");
    assert!(
        stderr.contains(&ckpt.join("epoch-2.partial").display().to_string())
            && stderr.contains(".bpk"),
        "the error does not name the file:\n{stderr}"
    );
    assert!(
        files_ending(&ckpt, ".partial").is_empty(),
        "partial epoch left"
    );
    assert!(
        files_ending(&ckpt, ".tmp").is_empty(),
        "temporary file left"
    );
    assert_eq!(complete_epochs(&ckpt), vec![1]);
    assert_eq!(last_epoch_in_state(&run_dir), 1);

    // with room again, the run resumes after epoch 1 and finishes; its files get the
    // permissions the umask gives (not a temporary file's 0600)
    let out = Command::new("sh")
        .args(["-c", "umask 027; exec \"$0\" train \"$1\"", OML, &config])
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("after epoch 1"),
        "{stdout}"
    );
    assert_eq!(complete_epochs(&ckpt).last(), Some(&3));
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "best.bpk",
        "last.bpk",
        "epoch-3/weights.bpk",
        "epoch-3/model.bpk",
    ] {
        let mode = std::fs::metadata(ckpt.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640, "{f}: {mode:o}");
    }
}

/// A really full file system (ENOSPC, not a file-size limit): the run folder on a small tmpfs,
/// mounted in a user and mount namespace of the test's own (no privileges needed where the
/// kernel allows unprivileged user namespaces; the test says SKIPPED where it does not). The
/// epoch that does not fit fails whole, naming the file that did not fit and the cause (not
/// the `state.json` that cannot be written after it either); with room again the run resumes
/// after the last epoch that fitted and finishes.
#[cfg(target_os = "linux")]
#[test]
fn a_really_full_file_system_keeps_the_last_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg("mount -t tmpfs -o size=64k tmpfs \"$0\"")
        .arg(dir)
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("SKIPPED: cannot mount a tmpfs in a user namespace here");
        return;
    }
    let config = train_config(dir, 100, 3, "logs_folder: full\n");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "feat_dim: 16, channels: [8, 16, 16]",
        "feat_dim: 128, channels: [64, 128, 128]",
    );
    std::fs::write(&config, text).unwrap();
    run(
        &["train", config.to_str().unwrap(), "--stop-after-epoch", "1"],
        dir,
    );
    let weights = std::fs::metadata(dir.join("runs/full/checkpoints/epoch-1/weights.bpk"))
        .unwrap()
        .len();
    // Inside the namespace: `runs/` becomes a tmpfs holding a copy of the run with room for
    // half a model more; train (it must fail at epoch 2), look, give room, train again, look.
    let script = r#"set -u
D="$0"; OML="$1"; C="$2"; ROOM_KIB="$3"
cp -a "$D/runs" "$D/runs.copy"
USED_KIB=$(du -sk "$D/runs.copy" | cut -f1)
mount -t tmpfs -o size=$((USED_KIB + ROOM_KIB))k tmpfs "$D/runs" || exit 90
cp -a "$D/runs.copy/." "$D/runs/"
echo "used ${USED_KIB} KiB, room ${ROOM_KIB} KiB; $(df -k "$D/runs" | tail -1)" > "$D/full.df"
"$OML" train "$C" > "$D/full.out" 2> "$D/full.err"; echo $? > "$D/full.rc"
(cd "$D/runs/full/checkpoints" && find . | sort) > "$D/full.ls"
cp "$D/runs/full/state.json" "$D/full.state"
mount -o remount,size=256m "$D/runs" || exit 91
"$OML" train "$C" > "$D/again.out" 2> "$D/again.err"; echo $? > "$D/again.rc"
(cd "$D/runs/full/checkpoints" && find . | sort) > "$D/again.ls"
"#;
    let status = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", script])
        .arg(dir)
        .arg(OML)
        .arg(&config)
        .arg((weights / 1024 / 2).to_string())
        .status()
        .unwrap();
    assert!(status.success(), "the namespace script failed: {status}");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let (rc, stderr) = (read("full.rc"), read("full.err"));
    assert_ne!(
        rc.trim(),
        "0",
        "training went on with a full disk:\n{stderr}"
    );
    // The disk fills in epoch 2 (its logs and figures, then whichever write comes next: the
    // history at validation or a checkpoint record); the error names that file and the cause.
    let run_dir = dir.join("runs/full").display().to_string();
    let error = stderr
        .lines()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or("");
    let cause = error.split("No space left").next().unwrap_or("");
    assert!(
        error.contains("No space left")
            && cause.contains(&run_dir)
            && !cause.contains("state.json"),
        "the error does not name the file and the cause ({}):\n{stderr}",
        read("full.df")
    );
    let listing = read("full.ls");
    assert!(
        !listing.contains(".partial") && !listing.contains(".tmp"),
        "half-written files left:\n{listing}"
    );
    assert!(
        listing.contains("./epoch-1/weights.bpk") && !listing.contains("./epoch-2"),
        "{listing}"
    );
    let state: serde_json::Value = serde_json::from_str(&read("full.state")).unwrap();
    assert_eq!(state["last_epoch"], 1);
    let (rc, stdout) = (read("again.rc"), read("again.out"));
    assert_eq!(rc.trim(), "0", "{stdout}\n{}", read("again.err"));
    assert!(stdout.contains("after epoch 1"), "{stdout}");
    assert!(read("again.ls").contains("./epoch-3/weights.bpk"));
}
