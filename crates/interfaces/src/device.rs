//! Picking the Burn device (and so the backend) at run time.
//!
//! Backends are compiled in by this crate's cargo features (`flex`, `ndarray`, `wgpu`, `cuda`); the
//! facade crate and the binaries forward theirs here. The choice is made by name, from a CLI
//! flag, else `BURN_DEVICE`, else the default CPU backend (Flex; see `docs/backends.md` for the
//! measurement behind that default).

use burn::tensor::Device;

/// Environment variable naming the backend for tests (`flex`, `ndarray`, `wgpu`).
pub const TEST_DEVICE_ENV: &str = "OML_TEST_DEVICE";

/// Why no device could be made.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// The name is not a backend this crate knows.
    #[error("unknown device `{name}`: expected one of {known}")]
    Unknown {
        /// The name as given.
        name: String,
        /// The accepted names.
        known: String,
    },
    /// The backend exists but was not compiled in.
    #[error(
        "device `{name}` is not compiled in: rebuild with the cargo feature `{}` (compiled: {})",
        if name == "cpu" { "flex` or `ndarray" } else { name },
        if compiled.is_empty() { "none" } else { compiled }
    )]
    NotCompiled {
        /// The requested backend.
        name: String,
        /// The backends that are compiled in.
        compiled: String,
    },
}

/// The backends known by name, in order of preference for the default.
pub const KNOWN: [&str; 4] = ["flex", "ndarray", "wgpu", "cuda"];

/// The backends compiled into this build.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "flex") {
        v.push("flex");
    }
    if cfg!(feature = "ndarray") {
        v.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    v
}

/// Makes the device for a backend name (`flex`, `ndarray`, `wgpu`, `cuda`, or `cpu` as an alias
/// of the default CPU backend). `wgpu` takes the system's default adapter (a software Vulkan
/// driver such as Mesa's lavapipe works), `cuda` the first CUDA device.
pub fn device_by_name(name: &str) -> Result<Device, DeviceError> {
    let lower = name.trim().to_ascii_lowercase();
    let not_compiled = || DeviceError::NotCompiled {
        name: lower.clone(),
        compiled: compiled_backends().join(", "),
    };
    match lower.as_str() {
        "cpu" => match compiled_backends()
            .into_iter()
            .find(|b| matches!(*b, "flex" | "ndarray"))
        {
            Some(cpu) => device_by_name(cpu),
            // Name what was asked and the features that would give it, not a backend the
            // user never named.
            None => Err(DeviceError::NotCompiled {
                name: "cpu".into(),
                compiled: compiled_backends().join(", "),
            }),
        },
        "flex" => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
            #[allow(unreachable_code)]
            Err(not_compiled())
        }
        "ndarray" => {
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            return Ok(Device::ndarray());
            #[allow(unreachable_code)]
            Err(not_compiled())
        }
        "wgpu" | "gpu" => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
            #[allow(unreachable_code)]
            Err(not_compiled())
        }
        "cuda" => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(0usize));
            #[allow(unreachable_code)]
            Err(not_compiled())
        }
        _ => Err(DeviceError::Unknown {
            name: name.to_string(),
            known: "cpu, flex, ndarray, wgpu, cuda".to_string(),
        }),
    }
}

/// Picks the device: `flag` if given, else `BURN_DEVICE`, else the first compiled backend of
/// [`KNOWN`] (Flex when it is compiled in).
pub fn select_device(flag: Option<&str>) -> Result<Device, DeviceError> {
    if let Some(name) = flag {
        return device_by_name(name);
    }
    if let Ok(name) = std::env::var("BURN_DEVICE")
        && !name.trim().is_empty()
    {
        return device_by_name(&name);
    }
    match compiled_backends().first() {
        Some(name) => device_by_name(name),
        None => Err(DeviceError::NotCompiled {
            name: "flex".to_string(),
            compiled: "none".to_string(),
        }),
    }
}

/// The device tests run on: `OML_TEST_DEVICE` if set, else as [`select_device`] with no flag.
///
/// # Panics
/// When the requested backend is unknown or not compiled in: a test configuration error.
pub fn test_device() -> Device {
    let flag = std::env::var(TEST_DEVICE_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    select_device(flag.as_deref()).unwrap_or_else(|e| panic!("{TEST_DEVICE_ENV}: {e}"))
}

/// The `index`-th device wgpu finds on this machine (in the order Burn enumerates them), for
/// data-parallel training on several GPUs; `None` when there is no such device or wgpu is not
/// compiled in (then callers fall back to one device).
pub fn wgpu_device(index: usize) -> Option<Device> {
    #[cfg(feature = "wgpu")]
    return Device::enumerate(burn::tensor::DeviceType::Wgpu)
        .into_iter()
        .nth(index);
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = index;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let err = device_by_name("tpu").unwrap_err();
        assert!(err.to_string().contains("`tpu`"), "{err}");
    }

    /// `cpu` on a build without a CPU backend (say wgpu only) names what was asked and the
    /// features that give it, not `ndarray`.
    #[test]
    fn a_missing_cpu_backend_names_both_cpu_features() {
        let err = DeviceError::NotCompiled {
            name: "cpu".into(),
            compiled: "wgpu".into(),
        };
        assert_eq!(
            err.to_string(),
            "device `cpu` is not compiled in: rebuild with the cargo feature `flex` or `ndarray` (compiled: wgpu)"
        );
        let none = DeviceError::NotCompiled {
            name: "wgpu".into(),
            compiled: String::new(),
        };
        assert!(
            none.to_string()
                .ends_with("feature `wgpu` (compiled: none)"),
            "{none}"
        );
    }

    #[test]
    fn default_device_runs_a_tensor_op() {
        let device = select_device(Some("cpu")).unwrap();
        let t = burn::tensor::Tensor::<1>::from_data([1.0, 2.0, 3.0], &device);
        let s: f32 = t.sum().into_scalar::<f32>();
        assert_eq!(s, 6.0);
    }
}
