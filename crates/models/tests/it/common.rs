//! Test helpers: the fixtures folder, a tiny `.npy` reader, and a `torch.save` writer.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, ModuleStore, PytorchStore};
use burn::tensor::DType;

/// `$OML_FIXTURES_DIR`, else `<repo>/../shared/fixtures`; `None` (with a clear message) when the
/// extractor fixtures are not there.
pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("OML_FIXTURES_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    let ext = dir.join("extractors");
    if ext.join("resnet18.pth").is_file() {
        Some(ext)
    } else {
        eprintln!(
            "SKIPPED: extractor parity fixtures not found at {} (set OML_FIXTURES_DIR to the folder holding extractors/)",
            ext.display()
        );
        None
    }
}

/// A float32 array from a `.npy` file (little-endian `<f4`, C order: all the fixtures use).
/// Private until `oml_datasets::npy` can be used here.
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}: not .npy", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'"),
        "{}: {header}",
        path.display()
    );
    assert!(
        header.contains("'fortran_order': False"),
        "{}: {header}",
        path.display()
    );
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_txt
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(
        data.len(),
        shape.iter().product::<usize>(),
        "{}",
        path.display()
    );
    (shape, data)
}

/// A 4-D tensor from a `.npy` file.
pub fn npy4(path: &Path, device: &Device) -> Tensor<4> {
    let (shape, data) = read_npy(path);
    Tensor::from_data(
        TensorData::new(data, [shape[0], shape[1], shape[2], shape[3]]),
        device,
    )
}

/// Host copy of a tensor.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// max |a − b|.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// One tensor to write with [`torch_save`].
#[derive(Debug, Clone)]
pub struct TorchTensor {
    /// Key.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: TorchData,
}

/// Element data.
#[derive(Debug, Clone)]
pub enum TorchData {
    /// float32.
    F32(Vec<f32>),
    /// int64 (`num_batches_tracked`).
    I64(Vec<i64>),
}

impl TorchTensor {
    /// A float tensor.
    pub fn f32(name: &str, shape: &[usize], data: Vec<f32>) -> Self {
        assert_eq!(data.len(), shape.iter().product::<usize>());
        Self {
            name: name.to_string(),
            shape: shape.to_vec(),
            data: TorchData::F32(data),
        }
    }

    /// The same tensor under another name.
    pub fn renamed(&self, name: String) -> Self {
        Self {
            name,
            ..self.clone()
        }
    }
}

/// All tensors of a PyTorch file (keys as stored, nested dicts joined by dots).
pub fn read_torch(path: &Path) -> Vec<TorchTensor> {
    let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
    let all = store.get_all_tensors().unwrap();
    let mut out: Vec<TorchTensor> = all
        .values()
        .map(|t| {
            let bytes = t.to_bytes().unwrap();
            let shape = t.shape.to_vec();
            let data = match t.dtype {
                DType::F32 => TorchData::F32(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                DType::I64 => TorchData::I64(
                    bytes
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                d => panic!("{}: unexpected dtype {d:?}", t.name),
            };
            TorchTensor {
                name: t.name.clone(),
                shape,
                data,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A model's parameters under PyTorch names (norm `gamma/beta` → `weight/bias`, Linear
/// transposed), with `rename` applied to each key.
pub fn export_torch<M: Module>(model: &M, rename: impl Fn(&str) -> String) -> Vec<TorchTensor> {
    model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| {
            let name = rename(&t.name);
            let shape = t.shape.to_vec();
            let bytes = t.to_bytes().unwrap();
            assert_eq!(t.dtype, DType::F32, "{name}");
            let data = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            TorchTensor {
                name,
                shape,
                data: TorchData::F32(data),
            }
        })
        .collect()
}

/// How [`torch_save`] nests the tensors.
pub enum Nesting<'a> {
    /// `torch.save(state_dict)`.
    Plain,
    /// A Lightning checkpoint: `{"epoch": 3, "state_dict": {…}, "optimizer_states": [{…extra}]}`.
    Lightning(&'a [TorchTensor]),
}

fn unicode(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'X');
    buf.extend((s.len() as u32).to_le_bytes());
    buf.extend(s.as_bytes());
}

fn int(buf: &mut Vec<u8>, v: usize) {
    if v < 256 {
        buf.push(b'K');
        buf.push(v as u8);
    } else if v < 65536 {
        buf.push(b'M');
        buf.extend((v as u16).to_le_bytes());
    } else {
        buf.push(b'J');
        buf.extend((v as i32).to_le_bytes());
    }
}

/// Pickles `{key: tensor}` the way `torch.save` does (protocol 2, `_rebuild_tensor_v2`).
fn dict(buf: &mut Vec<u8>, tensors: &[TorchTensor], storages: &mut Vec<Vec<u8>>) {
    buf.push(b'}');
    if tensors.is_empty() {
        return;
    }
    buf.push(b'(');
    for t in tensors {
        unicode(buf, &t.name);
        buf.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        let (class, bytes): (&str, Vec<u8>) = match &t.data {
            TorchData::F32(v) => (
                "FloatStorage",
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            TorchData::I64(v) => (
                "LongStorage",
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        };
        let numel: usize = t.shape.iter().product();
        buf.push(b'(');
        unicode(buf, "storage");
        buf.extend(format!("ctorch\n{class}\n").as_bytes());
        unicode(buf, &storages.len().to_string());
        unicode(buf, "cpu");
        int(buf, numel);
        buf.extend(b"tQ");
        storages.push(bytes);
        int(buf, 0);
        buf.push(b'(');
        for &d in &t.shape {
            int(buf, d);
        }
        buf.push(b't');
        buf.push(b'(');
        let mut stride = 1;
        let mut strides = vec![0; t.shape.len()];
        for i in (0..t.shape.len()).rev() {
            strides[i] = stride;
            stride *= t.shape[i];
        }
        for s in strides {
            int(buf, s);
        }
        buf.push(b't');
        buf.push(0x89); // requires_grad = False
        buf.extend(b"ccollections\nOrderedDict\n)R");
        buf.extend(b"tR");
    }
    buf.push(b'u');
}

fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, e) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *e = c;
    }
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Writes a PyTorch 1.6+ zip checkpoint (stored entries), as `torch.save` does.
pub fn torch_save(path: &Path, tensors: &[TorchTensor], nesting: Nesting) {
    let mut pkl = vec![0x80, 2];
    let mut storages = Vec::new();
    match nesting {
        Nesting::Plain => dict(&mut pkl, tensors, &mut storages),
        Nesting::Lightning(extra) => {
            pkl.extend(b"}(");
            unicode(&mut pkl, "epoch");
            int(&mut pkl, 3);
            unicode(&mut pkl, "state_dict");
            dict(&mut pkl, tensors, &mut storages);
            unicode(&mut pkl, "optimizer_states");
            pkl.push(b']');
            dict(&mut pkl, extra, &mut storages);
            pkl.push(b'a');
            pkl.push(b'u');
        }
    }
    pkl.push(b'.');

    let mut entries: Vec<(String, Vec<u8>)> = vec![
        ("archive/data.pkl".into(), pkl),
        ("archive/byteorder".into(), b"little".to_vec()),
    ];
    for (i, s) in storages.into_iter().enumerate() {
        entries.push((format!("archive/data/{i}"), s));
    }
    entries.push(("archive/version".into(), b"3\n".to_vec()));

    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut offset = 0u32;
    let mut central = Vec::new();
    for (name, data) in &entries {
        let crc = crc32(data);
        let mut local = Vec::new();
        local.extend(0x0403_4b50u32.to_le_bytes());
        local.extend(20u16.to_le_bytes()); // version needed
        local.extend(0u16.to_le_bytes()); // flags
        local.extend(0u16.to_le_bytes()); // stored
        local.extend(0u16.to_le_bytes()); // time
        local.extend(0x21u16.to_le_bytes()); // date
        local.extend(crc.to_le_bytes());
        local.extend((data.len() as u32).to_le_bytes());
        local.extend((data.len() as u32).to_le_bytes());
        local.extend((name.len() as u16).to_le_bytes());
        local.extend(0u16.to_le_bytes());
        local.extend(name.as_bytes());
        out.write_all(&local).unwrap();
        out.write_all(data).unwrap();

        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // made by
        central.extend(20u16.to_le_bytes()); // needed
        central.extend(0u16.to_le_bytes());
        central.extend(0u16.to_le_bytes());
        central.extend(0u16.to_le_bytes());
        central.extend(0x21u16.to_le_bytes());
        central.extend(crc.to_le_bytes());
        central.extend((data.len() as u32).to_le_bytes());
        central.extend((data.len() as u32).to_le_bytes());
        central.extend((name.len() as u16).to_le_bytes());
        central.extend([0u8; 12]); // extra, comment, disk, internal attrs, external attrs
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
        offset += (local.len() + data.len()) as u32;
    }
    out.write_all(&central).unwrap();
    let mut end = Vec::new();
    end.extend(0x0605_4b50u32.to_le_bytes());
    end.extend([0u8; 4]);
    end.extend((entries.len() as u16).to_le_bytes());
    end.extend((entries.len() as u16).to_le_bytes());
    end.extend((central.len() as u32).to_le_bytes());
    end.extend(offset.to_le_bytes());
    end.extend(0u16.to_le_bytes());
    out.write_all(&end).unwrap();
    out.flush().unwrap();
}

/// Deterministic pseudo-random values in `[-scale, scale]` (xorshift).
pub fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}
