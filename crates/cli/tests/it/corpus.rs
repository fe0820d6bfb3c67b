//! A corpus of malformed inputs (issue #19): `.npy` files, CSVs, flags, YAML configs and
//! checkpoints, each run through the `oml` binary. Every case must fail with a non-zero status,
//! without a panic, with a message naming the place (file, row, key or flag), and leave the
//! user's files byte-identical, writing nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_oml");

/// One malformed input: files written into a fresh folder, the arguments, and what the error
/// must say.
struct Case {
    name: String,
    files: Vec<(String, Vec<u8>)>,
    args: Vec<String>,
    needles: Vec<String>,
}

fn case(name: &str, files: Vec<(&str, Vec<u8>)>, args: &[&str], needles: &[&str]) -> Case {
    Case {
        name: name.to_string(),
        files: files.into_iter().map(|(n, b)| (n.to_string(), b)).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
        needles: needles.iter().map(|s| s.to_string()).collect(),
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Runs every case; returns the failures (all of them, so one run shows every gap).
fn run_all(cases: Vec<Case>, shared: &[(&str, Vec<u8>)]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in shared
            .iter()
            .map(|(n, b)| (n.to_string(), b.clone()))
            .chain(c.files.clone())
        {
            let path = dir.path().join(&name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        let before = snapshot(dir.path());
        let out = Command::new(BIN)
            .args(&c.args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let mut why = Vec::new();
        if out.status.success() {
            why.push("succeeded".to_string());
        }
        if err.contains("panicked") {
            why.push("panicked".to_string());
        }
        for n in &c.needles {
            if !err.contains(n.as_str()) {
                why.push(format!("no {n:?}"));
            }
        }
        if snapshot(dir.path()) != before {
            why.push("files changed or written".to_string());
        }
        if !why.is_empty() {
            let first = err.lines().next().unwrap_or("").to_string();
            failures.push(format!("{}: {} — {first}", c.name, why.join(", ")));
        }
    }
    failures
}

fn npy_bytes(descr: &str, fortran: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    header.push_str(&" ".repeat((64 - (11 + header.len()) % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

const CSV: &str = "label,path,split,is_query,is_gallery\n\
0,a.jpg,validation,True,True\n\
0,b.jpg,validation,True,True\n\
1,c.jpg,validation,True,True\n\
1,d.jpg,validation,True,True\n\
2,e.jpg,train,,\n";

fn good_npy() -> Vec<u8> {
    npy_bytes(
        "<f4",
        "False",
        "(5, 2)",
        &f32s(&[0.0, 0.0, 0.1, 0.0, 5.0, 5.0, 5.1, 5.0, 9.0, 9.0]),
    )
}

const EVAL: [&str; 7] = [
    "eval",
    "--embeddings",
    "e.npy",
    "--dataset",
    "d.csv",
    "--output",
    "out.json",
];

#[test]
fn malformed_embeddings_are_named() {
    let ten = f32s(&[0.5; 10]);
    let with = |i: usize, v: f32| {
        let mut x = vec![0.5f32; 10];
        x[i] = v;
        f32s(&x)
    };
    let npys: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("empty file", vec![], vec![]),
        ("text", b"label,embedding\n".to_vec(), vec![]),
        ("magic only", b"\x93NUMPY".to_vec(), vec![]),
        ("truncated header", good_npy()[..20].to_vec(), vec![]),
        (
            "header length past the end",
            {
                let mut b = good_npy();
                b[8] = 0xff;
                b[9] = 0x7f;
                b
            },
            vec![],
        ),
        (
            "version 9",
            {
                let mut b = good_npy();
                b[6] = 9;
                b
            },
            vec![],
        ),
        (
            "integer dtype",
            npy_bytes("<i4", "False", "(5, 2)", &ten),
            vec!["float"],
        ),
        (
            "bool dtype",
            npy_bytes("|b1", "False", "(5, 2)", &[1; 10]),
            vec![],
        ),
        (
            "complex dtype",
            npy_bytes("<c8", "False", "(5, 2)", &[0; 80]),
            vec![],
        ),
        (
            "string dtype",
            npy_bytes("<U4", "False", "(5, 2)", &[0; 160]),
            vec![],
        ),
        (
            "object dtype",
            npy_bytes("|O", "False", "(5, 2)", &[0; 80]),
            vec![],
        ),
        (
            "half dtype",
            npy_bytes("<f2", "False", "(5, 2)", &[0; 20]),
            vec![],
        ),
        ("1-d", npy_bytes("<f4", "False", "(10,)", &ten), vec![]),
        ("3-d", npy_bytes("<f4", "False", "(5, 2, 1)", &ten), vec![]),
        ("scalar", npy_bytes("<f4", "False", "()", &ten[..4]), vec![]),
        (
            "fewer rows than the CSV",
            npy_bytes("<f4", "False", "(4, 2)", &ten[..32]),
            vec!["4 rows"],
        ),
        (
            "more rows than the CSV",
            npy_bytes("<f4", "False", "(6, 2)", &f32s(&[0.5; 12])),
            vec!["6 rows"],
        ),
        (
            "dimension 0",
            npy_bytes("<f4", "False", "(5, 0)", &[]),
            vec!["dimension 0"],
        ),
        ("no rows", npy_bytes("<f4", "False", "(0, 2)", &[]), vec![]),
        (
            "data cut short",
            npy_bytes("<f4", "False", "(5, 2)", &ten[..30]),
            vec![],
        ),
        (
            "negative shape",
            npy_bytes("<f4", "False", "(-5, 2)", &ten),
            vec![],
        ),
        (
            "fractional shape",
            npy_bytes("<f4", "False", "(5, 2.5)", &ten),
            vec![],
        ),
        (
            "overflowing shape",
            npy_bytes("<f4", "False", "(99999999999999999999, 2)", &ten),
            vec![],
        ),
        (
            "missing descr",
            {
                let mut b = b"\x93NUMPY\x01\x00".to_vec();
                let h = format!(
                    "{{'fortran_order': False, 'shape': (5, 2), }}{}\n",
                    " ".repeat(73)
                );
                b.extend_from_slice(&(h.len() as u16).to_le_bytes());
                b.extend_from_slice(h.as_bytes());
                b.extend_from_slice(&ten);
                b
            },
            vec![],
        ),
        (
            "missing shape",
            {
                let mut b = b"\x93NUMPY\x01\x00".to_vec();
                let h = format!(
                    "{{'descr': '<f4', 'fortran_order': False, }}{}\n",
                    " ".repeat(73)
                );
                b.extend_from_slice(&(h.len() as u16).to_le_bytes());
                b.extend_from_slice(h.as_bytes());
                b.extend_from_slice(&ten);
                b
            },
            vec![],
        ),
        (
            "header not a dict",
            {
                let mut b = b"\x93NUMPY\x01\x00".to_vec();
                let h = format!("[1, 2, 3]{}\n", " ".repeat(108));
                b.extend_from_slice(&(h.len() as u16).to_le_bytes());
                b.extend_from_slice(h.as_bytes());
                b.extend_from_slice(&ten);
                b
            },
            vec![],
        ),
        (
            "NaN",
            npy_bytes("<f4", "False", "(5, 2)", &with(5, f32::NAN)),
            vec!["row 2", "NaN"],
        ),
        (
            "+inf",
            npy_bytes("<f4", "False", "(5, 2)", &with(0, f32::INFINITY)),
            vec!["row 0", "inf"],
        ),
        (
            "-inf",
            npy_bytes("<f4", "False", "(5, 2)", &with(9, f32::NEG_INFINITY)),
            vec!["row 4"],
        ),
        (
            "squared norm overflow",
            npy_bytes("<f4", "False", "(5, 2)", &with(6, 3e19)),
            vec!["row 3", "overflows"],
        ),
        (
            "f64 NaN",
            npy_bytes("<f8", "False", "(5, 2)", &{
                let mut v = [0.5f64; 10];
                v[3] = f64::NAN;
                v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()
            }),
            vec!["row 1"],
        ),
        (
            "f64 beyond f32",
            npy_bytes("<f8", "False", "(5, 2)", &{
                let mut v = [0.5f64; 10];
                v[2] = 1e300;
                v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()
            }),
            vec!["row 1"],
        ),
    ];
    let cases = npys
        .into_iter()
        .map(|(name, bytes, extra)| {
            let mut needles = vec!["e.npy"];
            needles.extend(extra);
            case(name, vec![("e.npy", bytes)], &EVAL, &needles)
        })
        .collect();
    let failures = run_all(cases, &[("d.csv", CSV.as_bytes().to_vec())]);
    assert!(
        failures.is_empty(),
        "{} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A CSV with five data rows (matching the embeddings) where data row `row` is `line`.
fn csv_with(row: usize, line: &str) -> Vec<u8> {
    let mut lines: Vec<&str> = CSV.lines().collect();
    lines[row] = line;
    (lines.join("\n") + "\n").into_bytes()
}

/// `CSV` with bounding-box columns (`0,4,0,4` on every row), the first row's box being `first`.
fn csv_with_boxes(first: &str) -> Vec<u8> {
    CSV.replacen("is_gallery\n", "is_gallery,x_1,x_2,y_1,y_2\n", 1)
        .replace("True\n", "True,0,4,0,4\n")
        .replace(",,\n", ",,0,4,0,4\n")
        .replacen("True,0,4,0,4", &format!("True,{first}"), 1)
        .into_bytes()
}

#[test]
fn malformed_dataset_csvs_are_named() {
    let h = "label,path,split,is_query,is_gallery";
    let csvs: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("empty", vec![], vec!["row 1"]),
        ("header only", format!("{h}\n").into_bytes(), vec!["row 1"]),
        ("blank lines only", b"\n\n\n".to_vec(), vec![]),
        ("BOM only", "\u{feff}".as_bytes().to_vec(), vec![]),
        (
            "no label column",
            CSV.replacen("label,", "lbl,", 1).into_bytes(),
            vec!["label"],
        ),
        (
            "no path column",
            CSV.replacen(",path,", ",file,", 1).into_bytes(),
            vec!["path"],
        ),
        (
            "no is_query column",
            CSV.replacen(",is_query,", ",query,", 1).into_bytes(),
            vec!["is_query"],
        ),
        (
            "duplicate column",
            CSV.replacen("is_gallery", "is_gallery,label", 1)
                .into_bytes(),
            vec!["row 1"],
        ),
        (
            "label not a number",
            csv_with(3, "x,c.jpg,validation,True,True"),
            vec!["row 4", "label"],
        ),
        (
            "label fractional",
            csv_with(3, "1.5,c.jpg,validation,True,True"),
            vec!["row 4", "label"],
        ),
        (
            "label empty",
            csv_with(3, ",c.jpg,validation,True,True"),
            vec!["row 4", "label"],
        ),
        (
            "label too large",
            csv_with(3, "99999999999999999999999,c.jpg,validation,True,True"),
            vec!["row 4", "label"],
        ),
        (
            "path empty",
            csv_with(2, "0,,validation,True,True"),
            vec!["row 3", "path"],
        ),
        (
            "is_query not a boolean",
            csv_with(1, "0,a.jpg,validation,maybe,True"),
            vec!["row 2", "is_query"],
        ),
        (
            "is_gallery not a boolean",
            csv_with(4, "1,d.jpg,validation,True,2"),
            vec!["row 5", "is_gallery"],
        ),
        (
            "neither query nor gallery",
            csv_with(4, "1,d.jpg,validation,False,False"),
            vec!["row 5"],
        ),
        (
            "validation flags empty",
            csv_with(4, "1,d.jpg,validation,,"),
            vec!["row 5"],
        ),
        (
            "unknown split",
            csv_with(2, "0,b.jpg,valid,True,True"),
            vec!["row 3", "split"],
        ),
        (
            "empty split",
            csv_with(2, "0,b.jpg,,True,True"),
            vec!["row 3", "split"],
        ),
        (
            "too few fields",
            csv_with(2, "0,b.jpg,validation,True"),
            vec!["row 3"],
        ),
        (
            "too many fields",
            csv_with(2, "0,b.jpg,validation,True,True,extra"),
            vec!["row 3"],
        ),
        (
            "unterminated quote",
            csv_with(5, "2,\"e.jpg,train,,"),
            vec![],
        ),
        (
            "invalid UTF-8 path",
            {
                let mut b = CSV.as_bytes()[..CSV.find("0,b.jpg").unwrap()].to_vec();
                b.extend_from_slice(b"0,\xff\xfe.jpg,validation,True,True\n1,c.jpg,validation,True,True\n1,d.jpg,validation,True,True\n2,e.jpg,train,,\n");
                b
            },
            vec!["row 3", "path"],
        ),
        (
            "bad row after blank lines",
            CSV.replacen("0,b.jpg", "\n\n0,b.jpg", 1)
                .replacen("1,c.jpg,validation", "1,c.jpg,validaton", 1)
                .into_bytes(),
            vec!["row 6", "split"],
        ),
        (
            "one bbox column",
            CSV.replacen("is_gallery\n", "is_gallery,x_1\n", 1)
                .replace("True\n", "True,1\n")
                .replace(",,\n", ",,1\n")
                .into_bytes(),
            vec!["x_1"],
        ),
        (
            "bbox not a number",
            csv_with_boxes("a,4,0,4"),
            vec!["row 2", "x_1"],
        ),
        ("empty bbox", csv_with_boxes("4,4,0,4"), vec!["row 2"]),
        ("negative bbox", csv_with_boxes("-1,4,0,4"), vec!["row 2"]),
        (
            "no gallery at all",
            CSV.replace("True,True", "True,False").into_bytes(),
            vec![],
        ),
        (
            "no query at all",
            CSV.replace("True,True", "False,True").into_bytes(),
            vec![],
        ),
    ];
    let cases = csvs
        .into_iter()
        .map(|(name, bytes, extra)| {
            let mut needles = vec!["d.csv"];
            needles.extend(extra);
            case(name, vec![("d.csv", bytes)], &EVAL, &needles)
        })
        .collect();
    let failures = run_all(cases, &[("e.npy", good_npy())]);
    assert!(
        failures.is_empty(),
        "{} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn malformed_flags_are_named() {
    let flags: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("cmc 0", vec!["--cmc", "0"], vec!["cmc"]),
        ("cmc not a number", vec!["--cmc", "one"], vec!["cmc"]),
        ("cmc negative", vec!["--cmc", "-1"], vec!["cmc"]),
        ("cmc fractional", vec!["--cmc", "1.5"], vec!["cmc"]),
        ("precision 0", vec!["--precision", "0"], vec!["precision"]),
        ("map not a number", vec!["--map", "x"], vec!["map"]),
        ("map empty item", vec!["--map", "1,,5"], vec!["map"]),
        ("ndcg 0", vec!["--ndcg", "0"], vec!["ndcg"]),
        ("mrr not a number", vec!["--mrr", "first"], vec!["mrr"]),
        ("fmr above 1", vec!["--fmr", "2"], vec!["fmr"]),
        ("fmr negative", vec!["--fmr", "-0.1"], vec!["fmr"]),
        ("fmr NaN", vec!["--fmr", "NaN"], vec!["fmr"]),
        ("pcf above 1", vec!["--pcf", "1.5"], vec!["pcf"]),
        ("pcf not a number", vec!["--pcf", "half"], vec!["pcf"]),
        ("format", vec!["--format", "xml"], vec!["format"]),
        ("split", vec!["--split", "test"], vec!["split"]),
        (
            "block size 0",
            vec!["--block-size", "0"],
            vec!["block-size"],
        ),
        (
            "block size negative",
            vec!["--block-size", "-8"],
            vec!["block-size"],
        ),
        ("selection", vec!["--selection", "gpu"], vec!["selection"]),
        ("device", vec!["--device", "tpu"], vec!["tpu"]),
        (
            "fast path",
            vec!["--cpu-fast-path", "maybe"],
            vec!["cpu-fast-path"],
        ),
        ("unknown flag", vec!["--topk", "5"], vec!["--topk"]),
        (
            "output onto the dataset",
            vec!["--output", "d.csv"],
            vec!["--dataset"],
        ),
        (
            "output onto the embeddings",
            vec!["--output", "e.npy"],
            vec!["--embeddings"],
        ),
        (
            "output under a file",
            vec!["--output", "d.csv/out.json"],
            vec!["d.csv"],
        ),
    ];
    let mut cases: Vec<Case> = flags
        .into_iter()
        .map(|(name, extra, needles)| {
            let mut args: Vec<&str> = EVAL[..5].to_vec();
            if !extra.contains(&"--output") {
                args.extend(["--output", "out.json"]);
            }
            args.extend(extra);
            case(name, vec![], &args, &needles)
        })
        .collect();
    for (name, args, needles) in [
        (
            "missing embeddings file",
            vec!["eval", "--embeddings", "none.npy", "--dataset", "d.csv"],
            vec!["none.npy"],
        ),
        (
            "missing dataset file",
            vec!["eval", "--embeddings", "e.npy", "--dataset", "none.csv"],
            vec!["none.csv"],
        ),
        (
            "no dataset flag",
            vec!["eval", "--embeddings", "e.npy"],
            vec!["--dataset"],
        ),
        (
            "embeddings is a folder",
            vec!["eval", "--embeddings", ".", "--dataset", "d.csv"],
            vec!["."],
        ),
        ("unknown command", vec!["evaluate"], vec!["evaluate"]),
        (
            "train without a config",
            vec!["train", "none.yaml"],
            vec!["none.yaml"],
        ),
        (
            "validate without a config",
            vec!["validate", "none.yaml"],
            vec!["none.yaml"],
        ),
        (
            "predict without a config",
            vec!["predict", "none.yaml"],
            vec!["none.yaml"],
        ),
    ] {
        cases.push(case(name, vec![], &args, &needles));
    }
    let failures = run_all(
        cases,
        &[("d.csv", CSV.as_bytes().to_vec()), ("e.npy", good_npy())],
    );
    assert!(
        failures.is_empty(),
        "{} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A valid training config on the Fashion-MNIST images prepared in `data` (absolute), one epoch.
fn train_yaml(data: &Path) -> String {
    format!(
        "seed: 3
dataset_root: {data}
max_epochs: 1
valid_period: 1
bs_val: 64
sampler: {{name: balance, args: {{n_labels: 5, n_instances: 8}}}}
extractor: {{name: small_cnn, args: {{feat_dim: 16, channels: [8, 16, 16]}}}}
criterion: {{name: triplet_with_miner, args: {{margin: 0.2, miner: {{name: hard_triplets}}}}}}
optimizer: {{name: adam, args: {{lr: 0.001}}}}
metric_args: {{cmc_top_k: [1, 5]}}
logs_root: runs
",
        data = data.display()
    )
}

/// Prepares 100 Fashion-MNIST images as PNG + CSV and trains one epoch on them: the data and a
/// checkpoint the malformed cases below start from.
fn prepared() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("train.yaml");
    let prep = format!(
        "prepare_data: {{name: fashion_mnist, args: {{source: {}, limit: 100}}}}\nlogs_folder: run\n",
        repo().join("data/fashion-mnist").display()
    );
    std::fs::write(&config, train_yaml(&data) + &prep).unwrap();
    let out = Command::new(BIN)
        .args(["train", config.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weights = dir.path().join("runs/run/checkpoints/last.bpk");
    (dir, data, weights)
}

#[test]
fn malformed_configs_checkpoints_and_images_are_named() {
    let (_keep, data, weights) = prepared();
    let good = train_yaml(&data);
    let edit = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        good.replacen(from, to, 1)
    };
    let add = |line: &str| format!("{good}{line}\n");
    // (name, config text, needles): every error before a run folder exists
    let configs: Vec<(&str, String, Vec<&str>)> = vec![
        ("unknown key", add("max_epoch: 3"), vec!["max_epoch"]),
        (
            "max_epochs 0",
            edit("max_epochs: 1", "max_epochs: 0"),
            vec!["max_epochs"],
        ),
        (
            "max_epochs negative",
            edit("max_epochs: 1", "max_epochs: -1"),
            vec!["max_epochs"],
        ),
        (
            "max_epochs text",
            edit("max_epochs: 1", "max_epochs: ten"),
            vec!["max_epochs"],
        ),
        (
            "max_epochs fractional",
            edit("max_epochs: 1", "max_epochs: 1.5"),
            vec!["max_epochs"],
        ),
        (
            "valid_period 0",
            edit("valid_period: 1", "valid_period: 0"),
            vec!["valid_period"],
        ),
        ("precision 16", add("precision: 16"), vec!["precision"]),
        (
            "num_workers huge",
            add("num_workers: 1000000"),
            vec!["num_workers"],
        ),
        (
            "num_workers negative",
            add("num_workers: -1"),
            vec!["num_workers"],
        ),
        ("devices 0", add("devices: 0"), vec!["devices"]),
        ("accelerator", add("accelerator: tpu"), vec!["tpu"]),
        ("seed text", edit("seed: 3", "seed: abc"), vec!["seed"]),
        (
            "cache_size negative",
            add("cache_size: -5"),
            vec!["cache_size"],
        ),
        (
            "criterion unknown",
            edit("name: triplet_with_miner", "name: tripletloss"),
            vec!["criterion", "tripletloss"],
        ),
        (
            "margin text",
            edit("margin: 0.2", "margin: big"),
            vec!["criterion", "margin"],
        ),
        (
            "margin negative",
            edit("margin: 0.2", "margin: -0.5"),
            vec!["margin"],
        ),
        (
            "margin zero",
            edit("margin: 0.2", "margin: 0"),
            vec!["margin"],
        ),
        (
            "criterion extra arg",
            edit("margin: 0.2,", "margin: 0.2, marginn: 1,"),
            vec!["marginn"],
        ),
        (
            "reduction",
            edit("margin: 0.2,", "margin: 0.2, reduction: avg,"),
            vec!["reduction"],
        ),
        (
            "miner unknown",
            edit("name: hard_triplets", "name: hardest"),
            vec!["miner", "hardest"],
        ),
        (
            "sampler unknown",
            edit("name: balance", "name: balanced"),
            vec!["sampler", "balanced"],
        ),
        (
            "n_labels negative",
            edit("n_labels: 5", "n_labels: -2"),
            vec!["sampler", "n_labels"],
        ),
        (
            "n_labels 1",
            edit("n_labels: 5", "n_labels: 1"),
            vec!["n_labels"],
        ),
        (
            "n_instances 0",
            edit("n_instances: 8", "n_instances: 0"),
            vec!["n_instances"],
        ),
        (
            "optimizer unknown",
            edit("name: adam", "name: adamw2"),
            vec!["optimizer", "adamw2"],
        ),
        ("lr negative", edit("lr: 0.001", "lr: -1"), vec!["lr"]),
        ("lr text", edit("lr: 0.001", "lr: fast"), vec!["lr"]),
        (
            "scheduler unknown",
            add("scheduling: {scheduler: {name: cosine_warm, args: {}}}"),
            vec!["scheduling", "cosine_warm"],
        ),
        (
            "logger unknown",
            add("logger: {name: wandb}"),
            vec!["logger", "wandb"],
        ),
        (
            "extractor unknown",
            edit("name: small_cnn", "name: small_rnn"),
            vec!["extractor", "small_rnn"],
        ),
        (
            "feat_dim 0",
            edit("feat_dim: 16", "feat_dim: 0"),
            vec!["feat_dim"],
        ),
        (
            "channels text",
            edit("channels: [8, 16, 16]", "channels: wide"),
            vec!["channels"],
        ),
        (
            "transforms unknown",
            add("transforms_train: {name: norm_magic}"),
            vec!["transforms_train", "norm_magic"],
        ),
        (
            "im_size 0",
            add("transforms_train: {name: norm_resize_torch, args: {im_size: 0}}"),
            vec!["im_size"],
        ),
        (
            "cmc_top_k 0",
            edit("cmc_top_k: [1, 5]", "cmc_top_k: [0]"),
            vec!["cmc_top_k"],
        ),
        (
            "cmc_top_k text",
            edit("cmc_top_k: [1, 5]", "cmc_top_k: first"),
            vec!["metric_args"],
        ),
        (
            "checkpoint metric typo",
            add("metric_for_checkpointing: OVERALL/cmc/7"),
            vec!["metric_for_checkpointing", "OVERALL/cmc/7"],
        ),
        (
            "checkpoint mode",
            add("mode_for_checkpointing: up"),
            vec!["mode_for_checkpointing"],
        ),
        (
            "dataset_root missing",
            edit(
                &format!("dataset_root: {}", data.display()),
                "dataset_root: no/such/folder",
            ),
            vec!["no/such/folder"],
        ),
        (
            "dataframe_name missing",
            add("dataframe_name: other.csv"),
            vec!["other.csv"],
        ),
        (
            "logs_folder is a file",
            add("logs_folder: taken.txt"),
            vec!["taken.txt"],
        ),
        (
            "yaml tab indentation",
            good.replacen("seed: 3", "seed: 3\n\tmax_epochs: 2", 1),
            vec!["train.yaml"],
        ),
        (
            "yaml unclosed bracket",
            edit("channels: [8, 16, 16]", "channels: [8, 16, 16"),
            vec!["train.yaml"],
        ),
        ("yaml duplicate key", add("seed: 4"), vec!["seed"]),
        (
            "yaml not a mapping",
            "- a\n- b\n".to_string(),
            vec!["train.yaml"],
        ),
        ("yaml empty", String::new(), vec!["train.yaml"]),
    ];
    let mut cases: Vec<Case> = configs
        .into_iter()
        .map(|(name, text, needles)| {
            case(
                name,
                vec![
                    ("train.yaml", text.into_bytes()),
                    ("runs/taken.txt", b"mine".to_vec()),
                ],
                &["train", "train.yaml"],
                &needles,
            )
        })
        .collect();

    // checkpoints given to `oml validate --weights`
    let validate = format!(
        "dataset_root: {}\nextractor: {{name: small_cnn, args: {{feat_dim: 16, channels: [8, 16, 16]}}}}\nmetric_args: {{cmc_top_k: [1]}}\n",
        data.display()
    );
    let real = std::fs::read(&weights).unwrap();
    let other_arch = validate.replace("channels: [8, 16, 16]", "channels: [4, 8, 8]");
    let checkpoints: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("missing weights", "none.bpk", vec![], "none.bpk"),
        ("empty weights", "w.bpk", vec![], "w.bpk"),
        (
            "text weights",
            "w.bpk",
            b"not a checkpoint".to_vec(),
            "w.bpk",
        ),
        (
            "truncated weights",
            "w.bpk",
            real[..real.len() / 2].to_vec(),
            "w.bpk",
        ),
        (
            "garbage PyTorch file",
            "w.pth",
            vec![0x80, 0x02, 0x7d, 0x71, 0x00],
            "w.pth",
        ),
        (
            "zip that is not a checkpoint",
            "w.pt",
            b"PK\x03\x04 not really".to_vec(),
            "w.pt",
        ),
    ];
    for (name, file, bytes, needle) in checkpoints {
        let mut files = vec![("validate.yaml", validate.clone().into_bytes())];
        if name != "missing weights" {
            files.push((file, bytes));
        }
        cases.push(case(
            name,
            files,
            &["validate", "validate.yaml", "--weights", file],
            &[needle],
        ));
    }
    cases.push(case(
        "weights of another architecture",
        vec![
            ("validate.yaml", other_arch.into_bytes()),
            ("w.bpk", real.clone()),
        ],
        &["validate", "validate.yaml", "--weights", "w.bpk"],
        &["w.bpk"],
    ));
    cases.push(case(
        "unknown pretrained key",
        vec![(
            "validate.yaml",
            validate
                .replace("name: small_cnn, args: {feat_dim: 16, channels: [8, 16, 16]}", "name: resnet, args: {arch: resnet18, gem_p: null, remove_fc: true, normalise_features: false}, weights: resnet18_imagenet_v9")
                .into_bytes(),
        )],
        &["validate", "validate.yaml"],
        &["resnet18_imagenet_v9"],
    ));

    // broken images given to `oml predict`
    let png = std::fs::read(
        walkdir::WalkDir::new(&data)
            .into_iter()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "png"))
            .unwrap()
            .path(),
    )
    .unwrap();
    let predict = "data_dir: images\nsave_dir: out\nextractor: {name: small_cnn, args: {feat_dim: 16, channels: [8, 16, 16]}}\n";
    let mut bomb = png[..33].to_vec(); // signature + IHDR claiming 100000 × 100000
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let images: Vec<(&str, &str, Vec<u8>)> = vec![
        ("zero-byte image", "images/a.png", vec![]),
        ("text as an image", "images/a.png", b"hello".to_vec()),
        (
            "truncated image",
            "images/a.png",
            png[..png.len() / 2].to_vec(),
        ),
        (
            "jpeg that is not",
            "images/a.jpg",
            vec![0xff, 0xd8, 0xff, 0x00, 0x01],
        ),
        ("image header claiming 10^10 pixels", "images/a.png", bomb),
    ];
    for (name, file, bytes) in images {
        cases.push(case(
            name,
            vec![
                ("predict.yaml", predict.as_bytes().to_vec()),
                (file, bytes),
                ("images/b.png", png.clone()),
            ],
            &["predict", "predict.yaml"],
            &[file.trim_start_matches("images/")],
        ));
    }
    let n = cases.len();
    let failures = run_all(cases, &[]);
    assert!(
        failures.is_empty(),
        "{} of {n} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(n, 59, "cases were lost");
}
