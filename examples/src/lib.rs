//! Helpers shared by the oml-rs examples (`examples/*.rs`); each example is a standalone
//! program a user can copy. Run one with `cargo run -p oml-examples --example <name>`.
//!
//! The backend is chosen here, in the leaf, by this crate's cargo features: `cpu` (Flex, the
//! default), `ndarray`, `wgpu`. A build with `wgpu` runs on the GPU; `BURN_DEVICE` (`flex`,
//! `ndarray`, `wgpu`) picks among the compiled backends at run time.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use oml_interfaces::DeviceError;

/// The device to run on: `BURN_DEVICE` if set, else the GPU when this crate's `wgpu` feature is
/// on (asking for it means wanting it), else the CPU backend compiled in. Printed on stderr.
pub fn device() -> Result<Device, DeviceError> {
    let env = std::env::var("BURN_DEVICE")
        .ok()
        .filter(|n| !n.trim().is_empty());
    let name = env.or_else(|| cfg!(feature = "wgpu").then(|| "wgpu".to_string()));
    let device = oml_interfaces::device::select_device(name.as_deref())?;
    eprintln!("device: {device:?}");
    Ok(device)
}

/// The repository's root (for the embedded Fashion-MNIST data).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The value after `--name` on the command line, parsed; `default` when absent.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    let flag = format!("--{name}");
    let mut args = std::env::args().skip_while(|a| *a != flag);
    match (args.next(), args.next()) {
        (None, _) => Ok(default),
        (Some(_), Some(v)) => v
            .parse()
            .map_err(|_| format!("--{name}: cannot parse `{v}`")),
        (Some(_), None) => Err(format!("--{name} needs a value")),
    }
}
