//! TensorBoard event files: read back by this crate's reader and by TensorBoard itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use oml_logging::tensorboard::{self, EventWhat, ValueKind, event_files, read_event_file};
use oml_logging::{PipelineLogger, RunStatus, TensorBoardLogger};
use serde_json::json;

use crate::common::{python_with, test_figure};

fn config() -> serde_json::Value {
    json!({"optimizer": {"name": "adam", "args": {"lr": 1e-5}}, "max_epochs": 3, "tags": ["x"]})
}

/// Logs scalars at steps 1..=5, a 7×5 figure at step 2 and the config; returns the logged
/// scalar values by tag.
fn write_run(dir: &Path) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut tb = TensorBoardLogger::new(dir).unwrap();
    tb.log_pipeline_info(
        &config(),
        &["smoke".into(), "cars".into()],
        Some(Path::new("/data/df.csv")),
    )
    .unwrap();
    let mut logged: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for step in 1..=5u64 {
        let loss = 1.0 / step as f64;
        let cmc = 0.1 * step as f64 + 0.0123;
        tb.log_scalars(step, &[("triplet_loss", loss), ("OVERALL/cmc/1", cmc)])
            .unwrap();
        logged
            .entry("triplet_loss".into())
            .or_default()
            .push((step as i64, loss));
        logged
            .entry("OVERALL/cmc/1".into())
            .or_default()
            .push((step as i64, cmc));
    }
    tb.log_figure(
        "image_logs/top 5 worst by OVERALL_cmc_1",
        &test_figure(7, 5),
        2,
    )
    .unwrap();
    tb.log_text("notes", "hello **markdown**", 4).unwrap();
    tb.finish(RunStatus::Finished).unwrap();
    logged
}

#[test]
fn event_file_parses_back_with_valid_crcs() {
    let dir = tempfile::tempdir().unwrap();
    let logged = write_run(dir.path());
    let files = event_files(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");

    // read_event_file checks the length and data CRC of every record.
    let events = read_event_file(&files[0]).unwrap();
    assert_eq!(
        events[0].what,
        EventWhat::FileVersion("brain.Event:2".into())
    );
    let mut scalars: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
    let mut images = Vec::new();
    let mut texts = BTreeMap::new();
    for ev in &events[1..] {
        assert!(ev.wall_time > 1.6e9, "wall time is seconds since the epoch");
        let EventWhat::Summary(values) = &ev.what else {
            panic!("unexpected event {ev:?}")
        };
        for v in values {
            match &v.value {
                ValueKind::Scalar(x) => scalars
                    .entry(v.tag.clone())
                    .or_default()
                    .push((ev.step, *x)),
                ValueKind::Image {
                    width,
                    height,
                    colorspace,
                    encoded,
                } => images.push((
                    v.tag.clone(),
                    ev.step,
                    *width,
                    *height,
                    *colorspace,
                    encoded.clone(),
                )),
                ValueKind::Strings(s) => {
                    assert_eq!(v.plugin_name.as_deref(), Some("text"));
                    texts.insert(v.tag.clone(), (ev.step, s.clone()));
                }
                ValueKind::Other => panic!("unexpected value {v:?}"),
            }
        }
    }
    for (tag, vals) in &logged {
        let got = &scalars[tag];
        assert_eq!(got.len(), vals.len(), "{tag}");
        for ((s1, v1), (s2, v2)) in vals.iter().zip(got) {
            assert_eq!(s1, s2);
            assert_eq!(*v2, *v1 as f32, "{tag} at {s1}");
        }
    }
    assert_eq!(images.len(), 1);
    let (tag, step, w, h, cs, png) = &images[0];
    assert_eq!(
        (tag.as_str(), *step, *w, *h, *cs),
        ("image_logs/top 5 worst by OVERALL_cmc_1", 2, 7, 5, 3)
    );
    assert_eq!(png, &test_figure(7, 5).png);

    let (step, cfg_text) = &texts["config"];
    assert_eq!(*step, 0);
    let body = cfg_text[0]
        .trim_start_matches("```json\n")
        .trim_end_matches("\n```");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap(),
        config()
    );
    assert_eq!(texts["tags"].1, vec!["smoke, cars".to_string()]);
    assert_eq!(texts["dataset"].1, vec!["/data/df.csv".to_string()]);
    assert_eq!(texts["notes"], (4, vec!["hello **markdown**".to_string()]));
}

#[test]
fn records_reach_the_file_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut tb =
        TensorBoardLogger::with_flush_interval(dir.path(), Duration::from_millis(100)).unwrap();
    // The version record is on disk at once.
    assert_eq!(read_event_file(tb.path()).unwrap().len(), 1);
    tb.log_scalars(1, &[("loss", 0.5)]).unwrap();
    // No finish, no explicit flush: only the background flush can bring the record to disk,
    // which is what a crash right after this point would keep.
    let t0 = Instant::now();
    loop {
        let n = read_event_file(tb.path()).unwrap().len();
        if n == 2 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "record not flushed after 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_corrupted_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let path = &event_files(dir.path()).unwrap()[0];
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x55;
    std::fs::write(path, &bytes).unwrap();
    assert!(matches!(
        read_event_file(path),
        Err(tensorboard::RecordError::Crc { .. })
    ));
}

const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0, "tensors": 0})
acc.Reload()
tags = acc.Tags()
out = {
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.step, e.width, e.height, len(e.encoded_image_string)] for e in acc.Images(t)] for t in tags["images"]},
    "tensors": {t: [[e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode()] for e in acc.Tensors(t)] for t in tags["tensors"]},
    "file_version": acc.file_version,
}
print(json.dumps(out))
"#;

#[test]
fn tensorboard_event_accumulator_reads_the_file() {
    let Some(python) = python_with("tensorboard") else {
        println!(
            "SKIP tensorboard_event_accumulator_reads_the_file: no Python with the `tensorboard` package \
             (set OML_TEST_PYTHON, or run crates/logging/ci/setup-services.sh)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let logged = write_run(dir.path());
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(READER)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let got: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    // EventAccumulator parses "brain.Event:2" into the number 2.0.
    assert_eq!(got["file_version"], json!(2.0));
    for (tag, vals) in &logged {
        let series = got["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("TensorBoard has no scalar {tag}: {got}"));
        assert_eq!(series.len(), vals.len());
        for ((step, v), e) in vals.iter().zip(series) {
            assert_eq!(e[0].as_i64().unwrap(), *step);
            // TensorBoard stores simple_value as float32.
            assert_eq!(e[1].as_f64().unwrap() as f32, *v as f32, "{tag} at {step}");
        }
    }
    let img = &got["images"]["image_logs/top 5 worst by OVERALL_cmc_1"][0];
    let png_len = test_figure(7, 5).png.len() as i64;
    assert_eq!(
        (
            img[0].as_i64(),
            img[1].as_i64(),
            img[2].as_i64(),
            img[3].as_i64()
        ),
        (Some(2), Some(7), Some(5), Some(png_len))
    );
    let cfg = got["tensors"]["config"][0][1].as_str().unwrap();
    let body = cfg
        .trim_start_matches("```json\n")
        .trim_end_matches("\n```");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap(),
        config()
    );
    assert_eq!(got["tensors"]["notes"][0], json!([4, "hello **markdown**"]));
}
