//! One module per suite; each owns its arguments and its measurements.

pub mod conv;
pub mod datasets;
pub mod loss;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod sampler;
pub mod train_step;

/// A count option: a whole number of at least 1 (0 would divide by zero or time nothing).
pub fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// [`positive`] for `u32` options.
pub fn positive_u32(s: &str) -> std::result::Result<u32, String> {
    u32::try_from(positive(s)?).map_err(|e| e.to_string())
}

/// Peak resident set size of this process so far, in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
