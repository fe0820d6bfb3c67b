//! Timing and the JSON line every measurement prints.

use std::time::Instant;

/// Runs `f` `warmup` times untimed, then `runs` times timed, and prints
/// `{"suite", "params", "median_s", "runs", "min_s", "max_s"}` as one JSON line.
/// `f` must block until its result is on the host (read it back), so GPU work is counted.
pub fn measure(
    suite: &str,
    params: serde_json::Value,
    warmup: usize,
    runs: usize,
    mut f: impl FnMut(),
) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let line = serde_json::json!({
        "suite": suite,
        "params": params,
        "median_s": median,
        "runs": times.len(),
        "min_s": times[0],
        "max_s": times[times.len() - 1],
    });
    println!("{line}");
    median
}

/// Reads JSON lines written by [`measure`] (other lines are skipped) and renders them as a
/// Markdown table: suite, the parameters that vary, median and min seconds.
pub fn table(text: &str) -> String {
    let mut out = String::from(
        "| suite | parameters | median s | min s | runs |\n|---|---|---:|---:|---:|\n",
    );
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(suite), Some(median), Some(params)) = (
            v["suite"].as_str(),
            v["median_s"].as_f64(),
            v["params"].as_object(),
        ) else {
            continue;
        };
        let params = params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "device" | "metrics" | "generate_s"))
            .map(|(k, x)| match x {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" ");
        let min = v["min_s"].as_f64().unwrap_or(f64::NAN);
        let runs = v["runs"].as_u64().unwrap_or(0);
        out += &format!("| {suite} | {params} | {median:.4} | {min:.4} | {runs} |\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_keeps_measurements_and_skips_other_lines() {
        let text = r#"{"suite":"loss","params":{"p":32,"miner":"hard","device":"x"},"median_s":0.5,"runs":3,"min_s":0.25,"max_s":1.0}
not json
{"suite":"metrics","op":"check","max_abs_diff":0.0}
{"suite":"metrics","op":"summary","median_s":2.0}
"#;
        let t = table(text);
        let rows: Vec<&str> = t.lines().skip(2).collect();
        assert_eq!(
            rows,
            vec!["| loss | miner=hard p=32 | 0.5000 | 0.2500 | 3 |"]
        );
    }
}
