//! glibc `malloc` settings for processes that run Burn on the CPU.
//!
//! A training or evaluation step allocates and frees the same few buffers of hundreds of KiB to
//! MiB every step. With glibc's defaults, buffers above its (dynamic) mmap threshold get a fresh
//! `mmap` each time and freed heap tops are trimmed back to the kernel, so every step pays page
//! faults and zeroing again: on a 2-core machine this was about half of a hard-triplet loss
//! step and over two thirds of a HardCluster one (`crates/malloc/README.md`). [`tune`] keeps those buffers in the
//! process: allocations up to 32 MiB come from the heap and up to 128 MiB of free heap top is
//! kept. Peak memory is unchanged; memory freed after the peak is returned later or not at all.
//!
//! The `oml` and `oml-bench` binaries call [`tune`] first thing. A program of your own can do the
//! same, or set the environment variables `MALLOC_MMAP_THRESHOLD_=33554432
//! MALLOC_TRIM_THRESHOLD_=134217728`; [`tune`] leaves the process alone when either of those, or
//! `GLIBC_TUNABLES`, is already set.
//!
//! ```
//! let applied = oml_malloc::tune();
//! // Applied on Linux with glibc, skipped elsewhere or when the environment already says.
//! println!("{applied:?}");
//! ```

/// Largest allocation served from the heap instead of its own `mmap`.
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory at the top of the heap kept before it is returned to the kernel.
pub const TRIM_THRESHOLD: usize = 128 << 20;

/// Environment variables through which the user already decides; [`tune`] then does nothing.
pub const USER_SETTINGS: [&str; 3] = [
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "GLIBC_TUNABLES",
];

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// Both thresholds set.
    Applied,
    /// The named environment variable is set: the user's settings stand.
    LeftToEnvironment(&'static str),
    /// Not glibc (or glibc refused a setting): nothing changed.
    Unsupported,
}

/// Sets glibc's mmap and trim thresholds (see the crate docs). Call it at the start of `main`,
/// before threads start.
pub fn tune() -> Tuning {
    if let Some(var) = USER_SETTINGS.iter().find(|v| std::env::var_os(v).is_some()) {
        return Tuning::LeftToEnvironment(var);
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_thresholds() -> Tuning {
    let ok = |param, value: usize| {
        let Ok(value) = libc::c_int::try_from(value) else {
            return false;
        };
        // SAFETY: `mallopt` only records integer parameters inside glibc's allocator; it takes
        // no pointers and is safe to call at any time (glibc serialises it with its own lock).
        unsafe { libc::mallopt(param, value) == 1 }
    };
    if ok(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) && ok(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) {
        Tuning::Applied
    } else {
        Tuning::Unsupported
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> Tuning {
    Tuning::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_on_glibc_and_memory_still_works() {
        let t = tune();
        if cfg!(all(target_os = "linux", target_env = "gnu"))
            && USER_SETTINGS.iter().all(|v| std::env::var_os(v).is_none())
        {
            assert_eq!(t, Tuning::Applied);
        }
        // Allocations on both sides of the threshold still behave.
        for size in [1usize << 10, MMAP_THRESHOLD - 1, MMAP_THRESHOLD + 1] {
            let v = vec![7u8; size];
            assert!(v.iter().all(|&b| b == 7));
        }
    }
}
