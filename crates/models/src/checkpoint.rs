//! Loading PyTorch checkpoints the way OML does, and saving/loading our own burnpack files.
//!
//! # PyTorch (`.pth`, `.pt`, `.ckpt`, `.pth.tar`)
//! Files are read by burn-store's [`PytorchStore`] (zip or legacy pickle) and applied through its
//! [`PyTorchToBurnAdapter`] (Linear weights transposed, norm `weight`/`bias` → `gamma`/`beta`),
//! with float tensors cast to `f32`. Before that, keys are processed as OML 4.0 does:
//! 1. a Lightning checkpoint's `state_dict` sub-dict is used when present;
//! 2. `criterion.weight` and `speaker_loss.weight` are dropped (OML's
//!    `remove_criterion_in_state_dict`; pairwise models skip this step, as in OML);
//! 3. the common prefix is found from a *trial key* (`layer4.` for ResNet, `norm.bias` for ViT,
//!    `extractor.` for the meta models) and stripped (OML's `remove_prefix_from_state_dict`);
//! 4. the model renames or drops keys it owns differently (see [`TorchLayout::map_key`]);
//! 5. gaps in list indices are closed (`projection.0`, `projection.3` → `0`, `1`), because
//!    PyTorch `Sequential`s number their parameter-free layers too.
//!
//! Loading is strict by default: missing keys, unexpected keys and mis-shaped keys are all
//! errors, named in [`ModelError::Checkpoint`]. `num_batches_tracked` buffers are ignored (Burn's
//! BatchNorm has no such counter).
//!
//! # Burnpack (`.bpk`)
//! [`save_burnpack`] / [`load_burnpack`] store the module's own parameter tree (burn-store's
//! native format), optionally with a JSON config in the file's metadata so the model can be
//! rebuilt without knowing its architecture in advance.

use std::path::Path;

use burn::prelude::*;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    ApplyError, ApplyResult, BurnpackStore, FloatCastAdapter, ModuleAdapter, ModuleSnapshot,
    ModuleStore, PyTorchToBurnAdapter, PytorchStore, map_indices_contiguous,
};
use burn::tensor::DType;
use oml_interfaces::ModelError;

/// Metadata key under which [`save_burnpack`] stores the model's JSON config.
pub const CONFIG_METADATA_KEY: &str = "oml_models.config";

/// Keys OML drops before loading (`remove_criterion_in_state_dict`).
pub const CRITERION_KEYS: [&str; 2] = ["criterion.weight", "speaker_loss.weight"];

/// How strictly a checkpoint must match the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// PyTorch's `strict`: missing and unexpected keys are errors. Mis-shaped keys are always
    /// errors. Default: `true` (as OML).
    pub strict: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { strict: true }
    }
}

impl LoadOptions {
    /// Tolerates missing and unexpected keys (they are listed in the [`LoadReport`]).
    pub fn lenient() -> Self {
        Self { strict: false }
    }
}

/// What a load did: which prefix was stripped and which keys were applied, ignored or left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// `Some("state_dict")` when a Lightning checkpoint's sub-dict was used.
    pub top_level_key: Option<String>,
    /// The prefix found from the trial key and stripped (`""` when none).
    pub stripped_prefix: String,
    /// Number of tensors written into the model.
    pub applied: usize,
    /// Checkpoint keys dropped on purpose (criterion weights, `num_batches_tracked`, a removed fc).
    pub ignored: Vec<String>,
    /// Model parameters the checkpoint did not provide (only non-empty when not strict).
    pub missing: Vec<String>,
    /// Checkpoint keys the model has no place for (only non-empty when not strict).
    pub unexpected: Vec<String>,
}

/// What [`TorchLayout::map_key`] decides for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Load the tensor under this (possibly renamed) key.
    Keep(String),
    /// Load it under this key with this many unit dimensions put in front (CLIP's
    /// `class_embedding` `[C]` is our `cls_token` `[1, 1, C]`).
    Unsqueeze(String, usize),
    /// Drop the tensor on purpose (it is reported in [`LoadReport::ignored`]).
    Drop,
}

impl KeyAction {
    /// The same action for the module held at `prefix` (e.g. `extractor.`) of its parent.
    pub fn under(self, prefix: &str) -> Self {
        match self {
            Self::Keep(k) => Self::Keep(format!("{prefix}{k}")),
            Self::Unsqueeze(k, dims) => Self::Unsqueeze(format!("{prefix}{k}"), dims),
            Self::Drop => Self::Drop,
        }
    }
}

/// How a module's parameters are named in OML's PyTorch state dicts.
///
/// Keys given to [`map_key`](Self::map_key) are relative to this module, e.g. `model.layer1.0.
/// downsample.0.weight` for a `ResnetExtractor`; meta models delegate the keys of their inner
/// extractor (`extractor.…`) to it.
pub trait TorchLayout {
    /// OML's trial key for finding the prefix to strip when this module is loaded on its own.
    fn trial_key(&self) -> &'static str;

    /// What OML's stripped keys are relative to: `"model."` for ResNet and ViT (OML loads them into
    /// `self.model`), `""` for the meta models (loaded into `self`).
    fn torch_root(&self) -> &'static str;

    /// Whether OML drops the criterion keys before loading (all but `ConcatSiamese`).
    fn removes_criterion(&self) -> bool {
        true
    }

    /// Renames or drops one key (relative to this module). The default keeps it as is.
    fn map_key(&self, key: &str) -> KeyAction {
        KeyAction::Keep(key.to_string())
    }

    /// Optional rewrite of the raw (post-`state_dict`) keys before any OML step, for checkpoints
    /// from other code bases (MoCo keeps only `module.encoder_q.*`). `None` drops the key. A
    /// renamed key replaces a key of the file that already had its new name (as OML's dict
    /// assignment does when CLIP's `visual.*` keys are taken out of a full CLIP state dict).
    fn raw_key(&self, key: &str) -> Option<String> {
        Some(key.to_string())
    }

    /// Whether keys the model has no place for are dropped silently (OML's
    /// `filter_state_dict`, which CLIP's loader applies: a full CLIP file holds the text tower
    /// too) rather than failing a strict load. Default `false`.
    fn drops_unneeded(&self) -> bool {
        false
    }
}

fn checkpoint_error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn list(items: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut s = items
        .iter()
        .take(SHOWN)
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(", … and {} more", items.len() - SHOWN));
    }
    s
}

/// OML's `find_prefix_in_state_dict`: the text before `trial_key` in a key containing it, checked
/// to start every key. OML takes the first such key in dict order; keys here come unordered, so
/// the longest candidate that starts every key is taken (the same answer on OML's layouts).
pub fn find_prefix(keys: &[String], trial_key: &str) -> Result<String, String> {
    let mut candidates: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.find(trial_key).map(|i| &k[..i]))
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.len()));
    candidates.dedup();
    if candidates.is_empty() {
        let mut shown = keys.to_vec();
        shown.sort();
        return Err(format!(
            "no key contains the trial key `{trial_key}` (OML's prefix detection); keys: {}",
            list(&shown)
        ));
    }
    if let Some(p) = candidates
        .iter()
        .find(|p| keys.iter().all(|k| k.starts_with(**p)))
    {
        return Ok(p.to_string());
    }
    let p = candidates[candidates.len() - 1];
    let mut bad: Vec<String> = keys.iter().filter(|k| !k.starts_with(p)).cloned().collect();
    bad.sort();
    Err(format!(
        "there are keys not starting with the prefix `{p}` found from `{trial_key}`: {}",
        list(&bad)
    ))
}

/// Whether `path` is a TorchScript archive: a zip whose folder holds the modules' compiled
/// source (`<name>/code/…`) beside the pickled data, where `torch.save` writes only `data.pkl`
/// and the tensors.
fn is_torchscript(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(archive) = zip::ZipArchive::new(std::io::BufReader::new(file)) else {
        return false;
    };
    archive
        .file_names()
        .flatten()
        .any(|name| name.split('/').nth(1) == Some("code"))
}

/// Loads a PyTorch checkpoint into `module` following OML's key processing (module docs).
pub fn load_pytorch<M>(
    mut module: M,
    path: &Path,
    options: &LoadOptions,
) -> Result<(M, LoadReport), ModelError>
where
    M: Module + TorchLayout,
{
    if !path.is_file() {
        return Err(checkpoint_error(path, "no such file"));
    }
    let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
    let all: Vec<PackTensor> = store
        .get_all_tensors()
        .map_err(|e| {
            if is_torchscript(path) {
                let file = path.display();
                checkpoint_error(
                    path,
                    format!(
                        "a TorchScript archive (as OpenAI's original CLIP files are), which cannot be \
                         read here; convert it once to a state dict with PyTorch: python -c \"import \
                         torch; torch.save(torch.jit.load('{file}', map_location='cpu').state_dict(), \
                         '{file}.pth')\" and load the .pth ({e})"
                    ),
                )
            } else {
                checkpoint_error(path, format!("not a readable PyTorch checkpoint: {e}"))
            }
        })?
        .values()
        .cloned()
        .collect();
    let mut report = LoadReport::default();

    // 1. Lightning: OML uses ckpt["state_dict"] when it exists.
    let lightning = all.iter().any(|t| t.name.starts_with("state_dict."));
    let mut tensors: Vec<PackTensor> = Vec::with_capacity(all.len());
    let mut renamed: Vec<bool> = Vec::with_capacity(all.len());
    for mut t in all {
        if lightning {
            match t.name.strip_prefix("state_dict.") {
                Some(rest) => t.name = rest.to_string(),
                None => continue, // optimizer states, callbacks, …
            }
        }
        match module.raw_key(&t.name) {
            Some(name) => {
                renamed.push(name != t.name);
                t.name = name;
                tensors.push(t);
            }
            None => report.ignored.push(t.name),
        }
    }
    // A renamed key wins over a key that had the name already.
    let taken: std::collections::HashSet<String> = tensors
        .iter()
        .zip(&renamed)
        .filter(|(_, r)| **r)
        .map(|(t, _)| t.name.clone())
        .collect();
    let mut keep = renamed.iter();
    tensors.retain(|t| {
        let overwritten = !keep.next().copied().unwrap_or(true) && taken.contains(&t.name);
        if overwritten {
            report.ignored.push(t.name.clone());
        }
        !overwritten
    });
    if lightning {
        report.top_level_key = Some("state_dict".to_string());
    }

    // 2. criterion keys.
    if module.removes_criterion() {
        tensors.retain(|t| {
            let drop = CRITERION_KEYS.contains(&t.name.as_str());
            if drop {
                report.ignored.push(t.name.clone());
            }
            !drop
        });
    }
    if tensors.is_empty() {
        return Err(checkpoint_error(path, "the checkpoint holds no tensors"));
    }

    // 3. prefix from the trial key.
    let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
    let prefix = find_prefix(&names, module.trial_key()).map_err(|m| checkpoint_error(path, m))?;
    let root = module.torch_root();

    // 4. the model's own renames.
    let mut kept = Vec::with_capacity(tensors.len());
    for mut t in tensors {
        let key = format!("{root}{}", &t.name[prefix.len()..]);
        if key.ends_with(".num_batches_tracked") || key == "num_batches_tracked" {
            report.ignored.push(t.name);
            continue;
        }
        match module.map_key(&key) {
            KeyAction::Keep(k) => {
                t.name = k;
                kept.push(t);
            }
            KeyAction::Unsqueeze(k, dims) => {
                let shape: Vec<usize> = std::iter::repeat_n(1, dims)
                    .chain(t.shape.iter().copied())
                    .collect();
                let (dtype, target) = (t.dtype, shape.clone());
                kept.push(burn::store::bridge::map_data(
                    t,
                    k,
                    dtype,
                    shape.into(),
                    move |data| TensorData::from_bytes(data.into_bytes(), target.clone(), dtype),
                ));
            }
            KeyAction::Drop => report.ignored.push(t.name),
        }
    }
    report.stripped_prefix = prefix;

    // 5. close index gaps left by parameter-free Sequential entries.
    let (kept, _) = map_indices_contiguous(kept);
    let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32));
    let result = module.apply(kept, None, Some(Box::new(adapter)), true);
    let drop_unneeded = module.drops_unneeded();
    finish(path, module, result, options, report, drop_unneeded)
}

/// Turns burn-store's [`ApplyResult`] into our strict/lenient verdict.
fn finish<M>(
    path: &Path,
    module: M,
    result: ApplyResult,
    options: &LoadOptions,
    mut report: LoadReport,
    drop_unneeded: bool,
) -> Result<(M, LoadReport), ModelError> {
    let mut misshaped = Vec::new();
    let mut other = Vec::new();
    for e in &result.errors {
        match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => misshaped.push(format!(
                "{path}: model expects {:?}, checkpoint has {:?}",
                expected.as_slice(),
                found.as_slice()
            )),
            e => other.push(e.to_string()),
        }
    }
    let mut missing: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
    missing.sort();
    let mut unexpected: Vec<String> = Vec::new();
    for k in &result.unused {
        if drop_unneeded || k.ends_with("num_batches_tracked") {
            report.ignored.push(k.clone());
        } else {
            unexpected.push(k.clone());
        }
    }
    unexpected.sort();
    report.ignored.sort();
    report.applied = result.applied.len();

    let mut problems = Vec::new();
    if !misshaped.is_empty() {
        problems.push(format!(
            "{} mis-shaped keys: {}",
            misshaped.len(),
            list(&misshaped)
        ));
    }
    if !other.is_empty() {
        problems.push(format!(
            "{} keys could not be loaded: {}",
            other.len(),
            list(&other)
        ));
    }
    if options.strict && !missing.is_empty() {
        problems.push(format!(
            "{} missing keys: {}",
            missing.len(),
            list(&missing)
        ));
    }
    if options.strict && !unexpected.is_empty() {
        problems.push(format!(
            "{} unexpected keys: {}",
            unexpected.len(),
            list(&unexpected)
        ));
    }
    if !problems.is_empty() {
        let prefix = if report.stripped_prefix.is_empty() {
            String::new()
        } else {
            format!(" (prefix `{}` stripped)", report.stripped_prefix)
        };
        let mode = if options.strict {
            "strict load"
        } else {
            "load"
        };
        return Err(checkpoint_error(
            path,
            format!("{mode} failed{prefix}: {}", problems.join("; ")),
        ));
    }
    report.missing = missing;
    report.unexpected = unexpected;
    Ok((module, report))
}

/// Saves the module's parameters as burnpack, with `config` (JSON) in the file's metadata when
/// given. The container is built in memory and written atomically
/// ([`oml_interfaces::fs::write_atomic`]: a temporary sibling renamed into place).
pub fn save_burnpack<M: Module>(
    module: &M,
    path: &Path,
    config: Option<&str>,
) -> Result<(), ModelError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| checkpoint_error(path, format!("cannot create folder: {e}")))?;
    let mut store = BurnpackStore::from_bytes(None);
    if let Some(c) = config {
        store = store.metadata(CONFIG_METADATA_KEY, c);
    }
    module
        .save_into(&mut store)
        .map_err(|e| checkpoint_error(path, format!("cannot write burnpack: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| checkpoint_error(path, format!("cannot write burnpack: {e}")))?;
    oml_interfaces::fs::write_atomic(path, &bytes)
        .map_err(|e| checkpoint_error(path, format!("cannot write the file: {e}")))?;
    Ok(())
}

/// Reads the JSON config [`save_burnpack`] stored, if any.
pub fn burnpack_config(path: &Path) -> Result<Option<String>, ModelError> {
    let reader = burn::store::burn_pack::Reader::from_file(path)
        .map_err(|e| checkpoint_error(path, format!("not a readable burnpack file: {e}")))?;
    Ok(reader.metadata().get(CONFIG_METADATA_KEY).cloned())
}

/// Loads burnpack parameters into `module` (strict unless told otherwise).
pub fn load_burnpack<M: Module>(
    mut module: M,
    path: &Path,
    options: &LoadOptions,
) -> Result<(M, LoadReport), ModelError> {
    if !path.is_file() {
        return Err(checkpoint_error(path, "no such file"));
    }
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .allow_partial(true)
        .validate(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| checkpoint_error(path, format!("not a readable burnpack file: {e}")))?;
    finish(path, module, result, options, LoadReport::default(), false)
}

/// Whether `path` names one of our burnpack files (by extension `.bpk`).
pub fn is_burnpack(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bpk"))
}

/// Loads weights from `path` into `module`: burnpack for `.bpk`, a PyTorch checkpoint otherwise.
pub fn load_weights<M>(
    module: M,
    path: &Path,
    options: &LoadOptions,
) -> Result<(M, LoadReport), ModelError>
where
    M: Module + TorchLayout,
{
    if is_burnpack(path) {
        load_burnpack(module, path, options)
    } else {
        load_pytorch(module, path, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefix_is_found_from_the_trial_key() {
        let k = keys(&[
            "model.model.conv1.weight",
            "model.model.layer4.0.conv1.weight",
        ]);
        assert_eq!(find_prefix(&k, "layer4.").unwrap(), "model.model.");
        let k = keys(&["cls_token", "blocks.0.norm1.bias", "norm.bias"]);
        assert_eq!(find_prefix(&k, "norm.bias").unwrap(), "");
    }

    #[test]
    fn prefix_errors_name_the_trial_key_and_the_offending_keys() {
        let e = find_prefix(&keys(&["a.weight"]), "norm.bias").unwrap_err();
        assert!(e.contains("`norm.bias`") && e.contains("a.weight"), "{e}");
        let k = keys(&["model.norm.bias", "head.weight"]);
        let e = find_prefix(&k, "norm.bias").unwrap_err();
        assert!(e.contains("`model.`") && e.contains("head.weight"), "{e}");
    }
}
