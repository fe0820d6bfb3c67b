//! The golden-case harness: OML 4.0's outputs on random inputs, as JSON files.
//!
//! Cases live in `<dir>/{metrics,losses}/*.json`, where `<dir>` is `$OML_GOLDEN_DIR` when set
//! and otherwise the repository's `tests/fixtures/golden` (a copy of `shared/golden`). Tests
//! whose names contain `golden` loop over [`cases`], report a failing case by its file name,
//! and fail when a directory they read holds no case (so a wrong path cannot pass silently).

use std::path::{Path, PathBuf};

/// Environment variable naming another directory of the same layout.
pub const GOLDEN_DIR_ENV: &str = "OML_GOLDEN_DIR";

/// One golden case.
#[derive(Debug, Clone)]
pub struct GoldenCase {
    /// The JSON file.
    pub path: PathBuf,
    /// Its parsed content.
    pub json: serde_json::Value,
}

impl GoldenCase {
    /// The file name, for messages (`case_101_00.json`).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// A sibling file with another extension (`.csv`, `.npy`).
    pub fn sibling(&self, extension: &str) -> PathBuf {
        self.path.with_extension(extension)
    }
}

/// The golden root: `$OML_GOLDEN_DIR`, else the repository's fixtures.
pub fn golden_root() -> PathBuf {
    match std::env::var_os(GOLDEN_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden"),
    }
}

/// Every `*.json` case of `kind` (`"metrics"` or `"losses"`), sorted by file name.
///
/// # Panics
/// When the directory is missing, unreadable, holds no case, or a case is not valid JSON:
/// each is a broken test setup that must fail loudly, naming the path.
pub fn cases(kind: &str) -> Vec<GoldenCase> {
    cases_in(&golden_root(), kind)
}

/// As [`cases`], under an explicit root.
pub fn cases_in(root: &Path, kind: &str) -> Vec<GoldenCase> {
    let dir = root.join(kind);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("golden directory {} cannot be read: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "golden directory {} holds no *.json case",
        dir.display()
    );
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
            GoldenCase { path, json }
        })
        .collect()
}

/// Runs `check` on every case of `kind`, collecting failures, and panics with the list of
/// failing case names and messages at the end (so one run shows every failing case).
pub fn check_all(kind: &str, mut check: impl FnMut(&GoldenCase) -> Result<(), String>) {
    let cases = cases(kind);
    let n = cases.len();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(c).err().map(|e| format!("{}: {e}", c.name())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {n} golden {kind} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "golden {kind}: {n} case(s) passed from {}",
        golden_root().join(kind).display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_fixture_dirs_hold_cases() {
        assert!(
            cases("metrics")
                .iter()
                .all(|c| c.json.get("expected").is_some())
        );
        assert!(
            cases("losses")
                .iter()
                .all(|c| c.json.get("features").is_some())
        );
    }

    #[test]
    #[should_panic(expected = "holds no *.json case")]
    fn golden_empty_dir_fails() {
        let dir = std::env::temp_dir().join(format!("oml-golden-empty-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("metrics")).unwrap();
        cases_in(&dir, "metrics");
    }
}
