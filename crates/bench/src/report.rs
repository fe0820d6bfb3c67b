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
