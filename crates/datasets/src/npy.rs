//! Reading and writing NumPy `.npy` files (format versions 1–3), for embeddings and tensors.
//!
//! Reading accepts little- or big-endian `f4`/`f8`/`f2`-free float data and integer data
//! (converted to `f32`), C or Fortran order. Writing produces version 1.0 little-endian `<f4`,
//! C order, atomically (temporary file + rename), so a reader never sees half a file.

use std::path::{Path, PathBuf};

/// Why an `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The content is not a valid `.npy` file of a supported kind.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A dense array read from `.npy`, in C (row-major) order, as `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions; `[]` for a scalar.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub data: Vec<f32>,
    /// The stored dtype, as NumPy spells it (`<f4`, `<f8`, `<i8`, …).
    pub dtype: String,
}

impl NpyArray {
    /// The array as `[rows, cols]`, or an error naming the file when it is not 2-D.
    pub fn dims2(&self, path: &Path) -> Result<[usize; 2], NpyError> {
        match self.shape.as_slice() {
            [r, c] => Ok([*r, *c]),
            other => Err(NpyError::Format {
                path: path.to_path_buf(),
                message: format!("expected a 2-D array [rows, dim], found shape {other:?}"),
            }),
        }
    }

    /// True when the stored dtype is a float type.
    pub fn is_float(&self) -> bool {
        self.dtype.contains('f')
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads an `.npy` file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray, NpyError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.into(),
        source,
    })?;
    parse_npy(&bytes).map_err(|message| NpyError::Format {
        path: path.into(),
        message,
    })
}

/// Parses the bytes of an `.npy` file; the error is a message without the path.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not an .npy file (bad magic bytes)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"').to_string();
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let fortran = match fortran.trim() {
        "True" => true,
        "False" => false,
        other => return Err(format!("bad fortran_order {other}")),
    };
    let shape_text = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let shape = parse_shape(&shape_text)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;

    let (endian, kind, size) = split_descr(&descr)?;
    let body = &bytes[end..];
    let need = count.checked_mul(size).ok_or("shape overflows")?;
    if body.len() < need {
        return Err(format!(
            "truncated data: shape {shape:?} of {descr} needs {need} bytes, file has {}",
            body.len()
        ));
    }
    let little = endian != '>';
    let mut data = Vec::with_capacity(count);
    for chunk in body[..need].chunks_exact(size) {
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(chunk);
        if !little {
            b[..size].reverse();
        }
        let v = match (kind, size) {
            ('f', 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            ('f', 8) => f64::from_le_bytes(b) as f32,
            ('i', 1) => b[0] as i8 as f32,
            ('i', 2) => i16::from_le_bytes([b[0], b[1]]) as f32,
            ('i', 4) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            ('i', 8) => i64::from_le_bytes(b) as f32,
            ('u', 1) | ('b', 1) => b[0] as f32,
            ('u', 2) => u16::from_le_bytes([b[0], b[1]]) as f32,
            ('u', 4) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            ('u', 8) => u64::from_le_bytes(b) as f32,
            _ => return Err(format!("unsupported dtype {descr}")),
        };
        data.push(v);
    }
    if fortran && shape.len() > 1 {
        data = fortran_to_c(&data, &shape);
    }
    Ok(NpyArray {
        shape,
        data,
        dtype: descr,
    })
}

/// Writes `data` (row-major, `shape`) as a little-endian `<f4` `.npy` file, atomically.
pub fn write_npy(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let path = path.as_ref();
    let expected: usize = shape.iter().product();
    if expected != data.len() {
        return Err(NpyError::Format {
            path: path.into(),
            message: format!(
                "shape {shape:?} needs {expected} values, got {}",
                data.len()
            ),
        });
    }
    let shape_text = match shape {
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending the header with a newline.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename
/// ([`oml_interfaces::fs::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NpyError> {
    oml_interfaces::fs::write_atomic(path, bytes).map_err(|source| NpyError::Io {
        path: path.into(),
        source,
    })
}

fn dict_value(header: &str, key: &str) -> Option<String> {
    let k1 = format!("'{key}'");
    let k2 = format!("\"{key}\"");
    let pos = header
        .find(&k1)
        .map(|p| p + k1.len())
        .or_else(|| header.find(&k2).map(|p| p + k2.len()))?;
    let rest = header[pos..].trim_start().strip_prefix(':')?.trim_start();
    if rest.starts_with('(') {
        let close = rest.find(')')?;
        return Some(rest[..=close].to_string());
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

fn parse_shape(text: &str) -> Result<Vec<usize>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or("bad shape")?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad shape entry {s:?}"))
        })
        .collect()
}

fn split_descr(descr: &str) -> Result<(char, char, usize), String> {
    let mut chars = descr.chars();
    let first = chars.next().ok_or("empty dtype")?;
    let (endian, rest) = if matches!(first, '<' | '>' | '|' | '=') {
        (first, &descr[1..])
    } else {
        ('<', descr)
    };
    let kind = rest.chars().next().ok_or("empty dtype")?;
    let size: usize = rest[1..]
        .parse()
        .map_err(|_| format!("unsupported dtype {descr}"))?;
    if !matches!(kind, 'f' | 'i' | 'u' | 'b')
        || !matches!(size, 1 | 2 | 4 | 8)
        || (kind == 'f' && size < 4)
    {
        return Err(format!(
            "unsupported dtype {descr}: expected float32/float64 or integers"
        ));
    }
    Ok((endian, kind, size))
}

fn fortran_to_c(data: &[f32], shape: &[usize]) -> Vec<f32> {
    let n = shape.len();
    // Fortran strides: first axis fastest.
    let mut f_strides = vec![1usize; n];
    for i in 1..n {
        f_strides[i] = f_strides[i - 1] * shape[i - 1];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; n];
    for _ in 0..data.len() {
        out.push(
            data[idx
                .iter()
                .zip(&f_strides)
                .map(|(i, s)| i * s)
                .sum::<usize>()],
        );
        for ax in (0..n).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n",
            if fortran { "True" } else { "False" }
        );
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn round_trip_f32() {
        let p = std::env::temp_dir().join(format!("oml-npy-rt-{}.npy", std::process::id()));
        let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        write_npy(&p, &[2, 3], &data).unwrap();
        let a = read_npy(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, data);
        assert_eq!(a.dims2(&p).unwrap(), [2, 3]);
        // The header is padded to a 64-byte boundary, as NumPy requires.
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn reads_f64_big_endian_int_and_fortran() {
        let body: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            parse_npy(&raw("<f8", false, "(2,)", &body)).unwrap().data,
            vec![1.5, -2.0]
        );
        let body: Vec<u8> = [3.0f32].iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(
            parse_npy(&raw(">f4", false, "(1,)", &body)).unwrap().data,
            vec![3.0]
        );
        let body: Vec<u8> = [7i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = parse_npy(&raw("<i8", false, "(2,)", &body)).unwrap();
        assert_eq!(a.data, vec![7.0, -1.0]);
        assert!(!a.is_float());
        // Fortran order [[1, 2, 3], [4, 5, 6]] is stored column by column.
        let body: Vec<u8> = [1f32, 4., 2., 5., 3., 6.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let a = parse_npy(&raw("<f4", true, "(2, 3)", &body)).unwrap();
        assert_eq!(a.data, vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn bad_files_are_errors_naming_the_problem() {
        assert!(parse_npy(b"hello").unwrap_err().contains("magic"));
        let body: Vec<u8> = [1f32].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(
            parse_npy(&raw("<f4", false, "(2, 2)", &body))
                .unwrap_err()
                .contains("truncated data")
        );
        assert!(
            parse_npy(&raw("<U3", false, "(1,)", b"abc"))
                .unwrap_err()
                .contains("unsupported dtype")
        );
        let e = read_npy("/nonexistent/e.npy").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/e.npy"), "{e}");
        let p = Path::new("x.npy");
        let a = NpyArray {
            shape: vec![3],
            data: vec![0.0; 3],
            dtype: "<f4".into(),
        };
        assert!(a.dims2(p).unwrap_err().to_string().contains("shape [3]"));
    }

    #[test]
    fn reads_the_golden_twins() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden/metrics");
        let p = dir.join("case_101_00.npy");
        let a = read_npy(&p).unwrap();
        let [rows, dim] = a.dims2(&p).unwrap();
        let json = std::fs::read_to_string(dir.join("case_101_00.json")).unwrap();
        // The JSON twin starts with the embeddings: its first row holds `dim` numbers.
        let first_row = json.split("[[").nth(1).unwrap().split(']').next().unwrap();
        let first: Vec<f32> = first_row
            .split(',')
            .map(|v| v.trim().parse().unwrap())
            .collect();
        assert_eq!(first.len(), dim);
        assert_eq!(&a.data[..dim], first.as_slice());
        let csv_rows = std::fs::read_to_string(dir.join("case_101_00.csv"))
            .unwrap()
            .lines()
            .count()
            - 1;
        assert_eq!(rows, csv_rows);
    }
}
