//! TFRecord framing: `u64 length (LE) | u32 masked_crc32c(length) | data | u32 masked_crc32c(data)`.

use std::path::Path;

/// TFRecord's CRC mask (`crc32c` rotated right by 15 bits plus a constant), so that a CRC of
/// data that itself holds CRCs is still well distributed.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one framed record to `out`.
pub fn frame(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// Why a TFRecord file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file ends inside a record.
    #[error("{path}: record {index} at byte {offset} is truncated")]
    Truncated {
        /// The file.
        path: String,
        /// The record's index (0-based).
        index: usize,
        /// Its byte offset.
        offset: usize,
    },
    /// A length or data CRC does not match.
    #[error(
        "{path}: record {index} at byte {offset}: {which} CRC is {found:#010x}, expected {expected:#010x}"
    )]
    Crc {
        /// The file.
        path: String,
        /// The record's index (0-based).
        index: usize,
        /// Its byte offset.
        offset: usize,
        /// `"length"` or `"data"`.
        which: &'static str,
        /// The CRC stored in the file.
        found: u32,
        /// The CRC of the bytes.
        expected: u32,
    },
    /// A record is not a valid `Event` message.
    #[error("{path}: record {index} is not a valid Event: {message}")]
    Decode {
        /// The file.
        path: String,
        /// The record's index (0-based).
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// Splits a TFRecord file into its records, checking both CRCs of each.
pub fn read_records(path: &Path) -> Result<Vec<Vec<u8>>, RecordError> {
    let bytes = std::fs::read(path).map_err(|source| RecordError::Io {
        path: path.display().to_string(),
        source,
    })?;
    split_records(&bytes, &path.display().to_string())
}

pub(crate) fn split_records(bytes: &[u8], name: &str) -> Result<Vec<Vec<u8>>, RecordError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let index = out.len();
        let truncated = || RecordError::Truncated {
            path: name.to_string(),
            index,
            offset: at,
        };
        let header = bytes.get(at..at + 12).ok_or_else(truncated)?;
        let len_bytes: [u8; 8] = header[..8].try_into().map_err(|_| truncated())?;
        let stored = u32::from_le_bytes(header[8..12].try_into().map_err(|_| truncated())?);
        let expected = masked_crc32c(&len_bytes);
        if stored != expected {
            return Err(RecordError::Crc {
                path: name.to_string(),
                index,
                offset: at,
                which: "length",
                found: stored,
                expected,
            });
        }
        let len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| truncated())?;
        let end = at
            .checked_add(12)
            .and_then(|s| s.checked_add(len))
            .ok_or_else(truncated)?;
        let data = bytes.get(at + 12..end).ok_or_else(truncated)?;
        let crc_bytes = bytes.get(end..end + 4).ok_or_else(truncated)?;
        let stored = u32::from_le_bytes(crc_bytes.try_into().map_err(|_| truncated())?);
        let expected = masked_crc32c(data);
        if stored != expected {
            return Err(RecordError::Crc {
                path: name.to_string(),
                index,
                offset: at,
                which: "data",
                found: stored,
                expected,
            });
        }
        out.push(data.to_vec());
        at = end + 4;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // CRC-32C check value from RFC 3720 (iSCSI), B.4: 32 bytes of zeros give 0x8A9136AA.
    #[test]
    fn crc32c_matches_rfc3720() {
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    #[allow(clippy::manual_rotate, reason = "written as TensorFlow writes it")]
    fn mask_is_tensorflows() {
        // TensorFlow's crc32c::Mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8, written out.
        for data in [&b""[..], b"a", b"brain.Event:2", &[0xffu8; 100]] {
            let crc = crc32c::crc32c(data);
            let tf = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
            assert_eq!(masked_crc32c(data), tf);
        }
    }

    #[test]
    fn frames_round_trip_and_corruption_is_caught() {
        let mut buf = Vec::new();
        frame(b"first", &mut buf);
        frame(b"", &mut buf);
        frame(&[7u8; 300], &mut buf);
        let recs = split_records(&buf, "mem").unwrap();
        assert_eq!(recs, vec![b"first".to_vec(), vec![], vec![7u8; 300]]);

        let mut bad = buf.clone();
        bad[14] ^= 1; // a byte of "first"
        assert!(matches!(
            split_records(&bad, "mem"),
            Err(RecordError::Crc {
                which: "data",
                index: 0,
                ..
            })
        ));
        let mut bad = buf.clone();
        bad[0] ^= 1; // the length
        assert!(matches!(
            split_records(&bad, "mem"),
            Err(RecordError::Crc {
                which: "length",
                ..
            })
        ));
        assert!(matches!(
            split_records(&buf[..buf.len() - 2], "mem"),
            Err(RecordError::Truncated { index: 2, .. })
        ));
    }
}
