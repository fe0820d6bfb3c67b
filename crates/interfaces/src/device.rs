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
    /// More devices were asked for than the backend has.
    #[error(
        "{asked} `{backend}` devices were asked for (`devices`), but this machine has {available}"
    )]
    TooMany {
        /// The backend.
        backend: String,
        /// Devices asked for.
        asked: usize,
        /// Devices the backend enumerates.
        available: usize,
    },
    /// `devices` is zero, negative (other than -1) or not a number.
    #[error("invalid `devices` = {0}: expected a count of at least 1, `all` or -1")]
    InvalidCount(String),
}

/// How many devices to train on: a count, or every device of the backend (`all`, or -1 as in
/// Lightning, which OML's configs follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceCount {
    /// Exactly this many (at least 1).
    Count(usize),
    /// Every device of the backend: every GPU, or the one CPU device.
    All,
    /// One device.
    #[default]
    One,
}

impl std::str::FromStr for DeviceCount {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, DeviceError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" | "-1" => Ok(DeviceCount::All),
            t => match t.parse::<usize>() {
                Ok(0) | Err(_) => Err(DeviceError::InvalidCount(s.to_string())),
                Ok(1) => Ok(DeviceCount::One),
                Ok(n) => Ok(DeviceCount::Count(n)),
            },
        }
    }
}

impl<'de> serde::Deserialize<'de> for DeviceCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(i) => i.to_string(),
            Raw::Text(t) => t,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for DeviceCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DeviceCount::All => s.serialize_str("all"),
            DeviceCount::One => s.serialize_u64(1),
            DeviceCount::Count(n) => s.serialize_u64(*n as u64),
        }
    }
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
    // `cpu` stays `cpu` when no CPU backend is compiled in: the error names what was asked,
    // not a backend the user never named.
    let lower = resolve_alias(name);
    let not_compiled = || DeviceError::NotCompiled {
        name: lower.clone(),
        compiled: compiled_backends().join(", "),
    };
    match lower.as_str() {
        "cpu" => Err(not_compiled()),
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
        "wgpu" => {
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
    device_by_name(&backend_name(flag)?)
}

/// The backend [`select_device`] picks, by name (`cpu` resolved to the CPU backend it means).
pub fn backend_name(flag: Option<&str>) -> Result<String, DeviceError> {
    let env = std::env::var("BURN_DEVICE").ok();
    match flag.or(env.as_deref().filter(|n| !n.trim().is_empty())) {
        Some(name) => Ok(resolve_alias(name)),
        None => match compiled_backends().first() {
            Some(name) => Ok(name.to_string()),
            None => Err(DeviceError::NotCompiled {
                name: "flex".to_string(),
                compiled: "none".to_string(),
            }),
        },
    }
}

/// A backend name, trimmed and lower-cased, with the aliases resolved: `cpu` is the first
/// compiled CPU backend (`cpu` itself when there is none), `gpu` is `wgpu`.
fn resolve_alias(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "cpu" => compiled_backends()
            .into_iter()
            .find(|b| matches!(*b, "flex" | "ndarray"))
            .unwrap_or("cpu")
            .to_string(),
        "gpu" => "wgpu".to_string(),
        _ => name,
    }
}

/// The devices to train on, of the backend [`select_device`] picks for `flag`.
///
/// A GPU backend (`wgpu`, `cuda`) gives its first `count` GPUs, each once (an error when the
/// machine has fewer). A CPU backend has one device: `count` handles of it, on which Burn's
/// data-parallel strategies run `count` workers sharing the CPU (each mining within its own
/// sub-batch, as on GPUs); `All` is that one device.
pub fn select_devices(flag: Option<&str>, count: DeviceCount) -> Result<Vec<Device>, DeviceError> {
    let backend = backend_name(flag)?;
    let first = device_by_name(&backend)?;
    let Some(gpus) = gpus(&backend) else {
        return Ok(match count {
            DeviceCount::Count(n) => vec![first; n],
            DeviceCount::All | DeviceCount::One => vec![first],
        });
    };
    let asked = match count {
        DeviceCount::One => return Ok(vec![first]),
        DeviceCount::All => gpus.len().max(1),
        DeviceCount::Count(n) => n,
    };
    if asked > gpus.len() {
        return Err(DeviceError::TooMany {
            backend,
            asked,
            available: gpus.len(),
        });
    }
    Ok(gpus.into_iter().take(asked).collect())
}

/// Every device of a GPU backend, in the backend's order; `None` for other backends.
fn gpus(backend: &str) -> Option<Vec<Device>> {
    match backend {
        #[cfg(feature = "wgpu")]
        "wgpu" => Some(
            Device::enumerate(burn::tensor::DeviceType::Wgpu)
                .into_iter()
                .collect(),
        ),
        #[cfg(feature = "cuda")]
        "cuda" => Some(
            Device::enumerate(burn::tensor::DeviceType::Cuda)
                .into_iter()
                .collect(),
        ),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let err = device_by_name("tpu").unwrap_err();
        assert!(err.to_string().contains("`tpu`"), "{err}");
    }

    #[test]
    fn device_counts_parse_from_numbers_and_all() {
        for (text, want) in [
            ("1", DeviceCount::One),
            ("3", DeviceCount::Count(3)),
            ("all", DeviceCount::All),
            (" ALL ", DeviceCount::All),
            ("-1", DeviceCount::All),
        ] {
            assert_eq!(text.parse::<DeviceCount>().unwrap(), want, "{text}");
        }
        for bad in ["0", "-2", "two", ""] {
            let err = bad.parse::<DeviceCount>().unwrap_err().to_string();
            assert!(err.contains("`devices`"), "{err}");
        }
        let yaml: DeviceCount = serde_json::from_str("-1").unwrap();
        assert_eq!(yaml, DeviceCount::All);
        let yaml: DeviceCount = serde_json::from_str("\"all\"").unwrap();
        assert_eq!(yaml, DeviceCount::All);
        assert!(serde_json::from_str::<DeviceCount>("0").is_err());
    }

    /// The CPU backend has one device: `n` handles of it. A GPU backend gives distinct GPUs
    /// and refuses more than it enumerates (whatever this machine has: none, lavapipe, GPUs).
    #[test]
    fn devices_are_distinct_gpus_or_the_one_cpu() {
        let cpu = select_devices(Some("flex"), DeviceCount::Count(3)).unwrap();
        assert_eq!(cpu.len(), 3);
        assert!(cpu.iter().all(|d| *d == cpu[0]));
        assert_eq!(
            select_devices(Some("cpu"), DeviceCount::All).unwrap().len(),
            1
        );

        let gpus = gpus("wgpu").unwrap();
        let err = select_devices(Some("wgpu"), DeviceCount::Count(gpus.len() + 1)).unwrap_err();
        assert_eq!(
            err,
            DeviceError::TooMany {
                backend: "wgpu".into(),
                asked: gpus.len() + 1,
                available: gpus.len()
            }
        );
        assert!(err.to_string().contains("this machine has"), "{err}");
        if !gpus.is_empty() {
            let all = select_devices(Some("gpu"), DeviceCount::All).unwrap();
            assert_eq!(all, gpus);
            for (i, a) in all.iter().enumerate() {
                assert!(all[..i].iter().all(|b| b != a), "device {i} repeated");
            }
        }
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
