//! `oml eval` end to end: the built binary on every golden case's `.csv`/`.npy` twin (OML 4.0's
//! numbers within 1e-5), and the bad inputs of issue 3 (clear error, non-zero exit, nothing
//! written).

use oml::datasets::npy::write_npy;
use oml_interfaces::golden::{GoldenCase, check_all};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_oml");

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn eval(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("eval")
        .args(args)
        .output()
        .expect("the oml binary runs")
}

/// `|a - b| <= 1e-5`, or OML's `null` where the project's rule (0 per query) applies: then the
/// expected mean comes from OML's per-query values with nulls at 0.
fn check_case(case: &GoldenCase, extra: &[&str]) -> Result<(), String> {
    let j = &case.json;
    let p = &j["params"];
    let (csv, npy) = (case.sibling("csv"), case.sibling("npy"));
    let out = eval(
        &[
            "--embeddings",
            npy.to_str().ok_or("path")?,
            "--dataset",
            csv.to_str().ok_or("path")?,
            "--cmc",
            &list(&p["cmc_top_k"]),
            "--precision",
            &list(&p["precision_top_k"]),
            "--map",
            &list(&p["map_top_k"]),
            "--fmr",
            &list(&p["fmr_vals"]),
            "--pcf",
            &list(&p["pcf_variance"]),
            "--format",
            "json",
        ]
        .iter()
        .chain(extra)
        .copied()
        .collect::<Vec<&str>>(),
    );
    if !out.status.success() {
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let got: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("stdout is not JSON: {e}"))?;
    let exp = j["expected"].as_object().ok_or("expected")?;
    let got_obj = got.as_object().ok_or("report is not an object")?;
    if got_obj.keys().next().map(String::as_str) != Some("OVERALL") {
        return Err("OVERALL must come first".into());
    }
    let mut a: Vec<&String> = got_obj.keys().collect();
    let mut b: Vec<&String> = exp.keys().collect();
    a.sort();
    b.sort();
    if a != b {
        return Err(format!("categories {a:?}, OML {b:?}"));
    }
    let cats: Option<Vec<String>> = j["categories"].as_array().map(|c| {
        let q = j["is_query"].as_array().cloned().unwrap_or_default();
        c.iter()
            .zip(q)
            .filter(|(_, q)| q.as_bool() == Some(true))
            .map(|(c, _)| c.as_str().unwrap_or("").to_string())
            .collect()
    });
    for (cat, metrics) in exp {
        let metrics = metrics.as_object().ok_or("metrics")?;
        if got[cat].as_object().map(|m| m.len()) != Some(metrics.len()) {
            return Err(format!("{cat}: metrics {:?}", got[cat]));
        }
        for (metric, by_k) in metrics {
            for (k, v) in by_k.as_object().ok_or("params")? {
                let o = got[cat][metric][k]
                    .as_f64()
                    .ok_or(format!("{cat}/{metric}/{k} missing or null"))?;
                let want = match v.as_f64() {
                    Some(v) => v,
                    None => {
                        let vals = j["expected_per_query_overall"][metric][k]
                            .as_array()
                            .ok_or("per-query")?;
                        let sel: Vec<f64> = vals
                            .iter()
                            .enumerate()
                            .filter(|(q, _)| {
                                cat == "OVERALL" || cats.as_ref().is_some_and(|c| &c[*q] == cat)
                            })
                            .map(|(_, v)| v.as_f64().unwrap_or(0.0))
                            .collect();
                        sel.iter().sum::<f64>() / sel.len() as f64
                    }
                };
                if (o - want).abs() > 1e-5 {
                    return Err(format!("{cat}/{metric}/{k}: oml eval {o}, OML {want}"));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn golden_cases_through_oml_eval() {
    // The CPU fast path (host GEMM, host kNN selection) and Burn's ops alone give OML's numbers.
    check_all("metrics", |case| {
        check_case(case, &[])?;
        check_case(case, &["--cpu-fast-path", "off"]).map_err(|e| format!("fast path off: {e}"))
    });
}

/// A scratch folder with a small valid dataset (`d.csv`, `e.npy`).
struct Scratch {
    dir: tempfile::TempDir,
}

const CSV: &str = "label,path,split,is_query,is_gallery\n\
0,a.jpg,validation,True,True\n\
0,b.jpg,validation,True,True\n\
1,c.jpg,validation,True,True\n\
1,d.jpg,validation,True,True\n\
2,e.jpg,train,,\n";

impl Scratch {
    fn new() -> Self {
        let s = Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        s.csv(CSV);
        s.npy(&[5, 2], &[0.0, 0.0, 0.1, 0.0, 5.0, 5.0, 5.1, 5.0, 9.0, 9.0]);
        s
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn csv(&self, text: &str) {
        std::fs::write(self.path("d.csv"), text).expect("write csv");
    }
    fn npy(&self, shape: &[usize], data: &[f32]) {
        write_npy(self.path("e.npy"), shape, data).expect("write npy");
    }
    /// Runs `oml eval` on the scratch files with `--output out.json` plus `extra`.
    fn run(&self, extra: &[&str]) -> Output {
        let (e, d, o) = (
            self.path("e.npy"),
            self.path("d.csv"),
            self.path("out.json"),
        );
        let mut args = vec![
            "--embeddings",
            e.to_str().unwrap(),
            "--dataset",
            d.to_str().unwrap(),
        ];
        args.extend(["--output", o.to_str().unwrap()]);
        args.extend(extra);
        eval(&args)
    }
    /// The run must fail, say all of `needles` on stderr, and write nothing.
    fn fails(&self, extra: &[&str], needles: &[&str]) {
        let out = self.run(extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "should fail: {extra:?}");
        for n in needles {
            assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
        }
        assert!(
            !self.path("out.json").exists(),
            "nothing may be written on error"
        );
    }
}

#[test]
fn valid_scratch_dataset_writes_the_report() {
    let s = Scratch::new();
    let out = s.run(&["--cmc", "1", "--ndcg", "2", "--fmr", "0.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("out.json")).unwrap()).unwrap();
    assert_eq!(v["OVERALL"]["cmc"]["1"], 1.0);
    assert_eq!(v["OVERALL"]["ndcg"]["2"], 1.0);
    assert!(v["OVERALL"]["fnmr@fmr"]["0.5"].is_number());
    // Table format on request.
    let out = eval(&[
        "--embeddings",
        s.path("e.npy").to_str().unwrap(),
        "--dataset",
        s.path("d.csv").to_str().unwrap(),
        "--format",
        "table",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cmc@1") && text.contains("OVERALL"), "{text}");
}

#[test]
fn no_split_column_evaluates_every_row_and_warns_about_queries_without_gallery_label() {
    let s = Scratch::new();
    s.csv("label,path,is_query,is_gallery\n0,a,True,True\n0,b,True,True\n1,c,True,True\n1,d,True,True\n7,e,True,False\n");
    let out = s.run(&["--cmc", "1", "--precision", "1", "--map", "1", "--pcf", ""]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 of 5 queries have no relevant gallery item"),
        "{err}"
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("out.json")).unwrap()).unwrap();
    assert!((v["OVERALL"]["cmc"]["1"].as_f64().unwrap() - 0.8).abs() < 1e-12);
}

/// A query whose only gallery item is itself retrieves nothing: OML scores it 1 on every
/// metric, and the warning says so (not "0", which holds for queries that retrieved items).
#[test]
fn queries_that_retrieve_nothing_are_reported_as_counted_1() {
    let s = Scratch::new();
    s.csv("label,path,is_query,is_gallery\n0,a,True,True\n0,b,True,False\n1,c,True,False\n");
    s.npy(&[3, 2], &[0.0, 0.0, 0.1, 0.0, 5.0, 5.0]);
    let out = s.run(&["--cmc", "1", "--precision", "1", "--map", "1", "--pcf", ""]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("1 of 3 queries have no relevant gallery item")
            && err.contains("count them as 0"),
        "{err}"
    );
    assert!(
        err.contains("1 of 3 queries retrieve nothing") && err.contains("counts them as 1"),
        "{err}"
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("out.json")).unwrap()).unwrap();
    // a: nothing retrieved → 1; b retrieves a → 1; c retrieves a, irrelevant → 0.
    assert!((v["OVERALL"]["cmc"]["1"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
}

/// `--output` naming an input is refused, and the input is left as it was.
#[test]
fn output_onto_an_input_is_refused() {
    let s = Scratch::new();
    for (flag, name) in [("--dataset", "d.csv"), ("--embeddings", "e.npy")] {
        let before = std::fs::read(s.path(name)).unwrap();
        let out = eval(&[
            "--embeddings",
            s.path("e.npy").to_str().unwrap(),
            "--dataset",
            s.path("d.csv").to_str().unwrap(),
            "--output",
            s.path(name).to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(flag), "{err}");
        assert_eq!(
            std::fs::read(s.path(name)).unwrap(),
            before,
            "{name} was changed"
        );
    }
}

/// `--output` is created with the permissions the umask gives (not the 0600 of a temporary
/// file), and a symlinked `--output` stays a link: the file it points to gets the report.
#[cfg(unix)]
#[test]
fn the_output_honours_the_umask_and_keeps_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let (e, d) = (s.path("e.npy"), s.path("d.csv"));
    let shell = |output: &Path| {
        Command::new("sh")
            .args([
                "-c",
                "umask 027; exec \"$0\" eval --embeddings \"$1\" --dataset \"$2\" --output \"$3\"",
                BIN,
                e.to_str().unwrap(),
                d.to_str().unwrap(),
                output.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let plain = s.path("plain.json");
    let out = shell(&plain);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "{mode:o}");

    let target = s.path("kept.json");
    std::fs::write(&target, "old").unwrap();
    let link = s.path("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(shell(&link).status.success());
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert!(report["OVERALL"].is_object(), "{report}");
}

/// The report on a closed stdout ends quietly (141, no panic); on a full one the error says
/// it was stdout.
#[test]
fn closed_or_full_stdout_is_not_a_panic() {
    let s = Scratch::new();
    let (e, d) = (s.path("e.npy"), s.path("d.csv"));
    let args = [
        "eval",
        "--embeddings",
        e.to_str().unwrap(),
        "--dataset",
        d.to_str().unwrap(),
    ];
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::from(writer))
        .output()
        .expect("the oml binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(141) && !err.contains("panicked"),
        "{err}"
    );
    if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
        let out = Command::new(BIN)
            .args(args)
            .stdout(std::process::Stdio::from(full))
            .output()
            .expect("the oml binary runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("writing to stdout") && !err.contains("panicked"),
            "{err}"
        );
    }
}

#[test]
fn bad_fast_path_switches_are_errors_naming_them() {
    let s = Scratch::new();
    s.fails(
        &["--cpu-fast-path", "maybe"],
        &["--cpu-fast-path", "on or off"],
    );
    let out = Command::new(BIN)
        .env("OML_CPU_FAST_PATH", "sometimes")
        .args(["eval", "--embeddings", "e.npy", "--dataset", "d.csv"])
        .current_dir(s.dir.path())
        .output()
        .expect("the oml binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("OML_CPU_FAST_PATH"),
        "{err}"
    );
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let s = Scratch::new();
    // npy/csv row count mismatch.
    s.npy(&[4, 2], &[0.0; 8]);
    s.fails(&[], &["e.npy", "4 rows", "5 data rows"]);
    s.npy(&[5, 2], &[0.0, 0.0, 0.1, 0.0, 5.0, 5.0, 5.1, 5.0, 9.0, 9.0]);
    // Missing and misspelled columns.
    s.csv("label,path,split,is_query\n0,a,validation,True\n0,b,validation,True\n1,c,validation,True\n1,d,validation,True\n2,e,train,\n");
    s.fails(&[], &["d.csv", "is_gallery", "missing"]);
    s.csv(&CSV.replace("label,", "lable,"));
    s.fails(&[], &["d.csv", "label", "missing"]);
    // Non-integer label.
    s.csv(&CSV.replace("1,c.jpg", "x1,c.jpg"));
    s.fails(&[], &["d.csv", "row 4", "label", "x1", "integer"]);
    // A validation row that is neither query nor gallery.
    s.csv(&CSV.replace(
        "1,d.jpg,validation,True,True",
        "1,d.jpg,validation,False,False",
    ));
    s.fails(&[], &["d.csv", "row 5", "query", "gallery"]);
    // No query, no gallery.
    s.csv(&CSV.replace("True,True", "False,True"));
    s.fails(&[], &["no row", "query"]);
    s.csv(&CSV.replace("True,True", "True,False"));
    s.fails(&[], &["no row", "gallery"]);
    s.csv(CSV);
    // NaN / inf in embeddings.
    s.npy(
        &[5, 2],
        &[0.0, 0.0, 0.1, f32::NAN, 5.0, 5.0, 5.1, 5.0, 9.0, 9.0],
    );
    s.fails(&[], &["e.npy", "row 1", "column 1", "NaN"]);
    s.npy(
        &[5, 2],
        &[0.0, 0.0, 0.1, 0.0, 5.0, f32::INFINITY, 5.1, 5.0, 9.0, 9.0],
    );
    s.fails(&[], &["e.npy", "row 2", "column 1", "inf"]);
    s.npy(&[5, 2], &[0.0, 0.0, 0.1, 0.0, 5.0, 5.0, 5.1, 5.0, 9.0, 9.0]);
    // k = 0, fmr and pcf outside [0, 1].
    s.fails(&["--cmc", "1,0"], &["--cmc", "k = 0"]);
    s.fails(&["--map", "0"], &["--map", "k = 0"]);
    s.fails(&["--fmr", "1.5"], &["--fmr", "1.5", "[0, 1]"]);
    s.fails(&["--pcf", "-0.1"], &["--pcf", "-0.1", "[0, 1]"]);
    // Truncated npy, non-float npy.
    let bytes = std::fs::read(s.path("e.npy")).unwrap();
    std::fs::write(s.path("e.npy"), &bytes[..bytes.len() - 6]).unwrap();
    s.fails(&[], &["e.npy", "truncated"]);
    write_int_npy(&s.path("e.npy"));
    s.fails(&[], &["e.npy", "<i8", "float"]);
    s.npy(&[5, 2], &[0.0, 0.0, 0.1, 0.0, 5.0, 5.0, 5.1, 5.0, 9.0, 9.0]);
    // Empty CSV.
    s.csv("");
    s.fails(&[], &["d.csv", "empty"]);
    s.csv("label,path,split,is_query,is_gallery\n");
    s.fails(&[], &["d.csv", "no data rows"]);
    // Missing files.
    std::fs::remove_file(s.path("d.csv")).unwrap();
    s.fails(&[], &["d.csv"]);
}

/// A `<i8` `.npy` of shape (5, 2).
fn write_int_npy(path: &Path) {
    let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (5, 2), }";
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((h.len() as u16).to_le_bytes());
    bytes.extend(h.as_bytes());
    for i in 0..10i64 {
        bytes.extend(i.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}
