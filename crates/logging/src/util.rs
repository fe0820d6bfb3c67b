//! Small helpers shared by the loggers: time, PNG headers, safe path names, error wrapping.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use oml_interfaces::{Figure, LoggerError};

/// Seconds since the Unix epoch, as TensorBoard's `wall_time`.
pub(crate) fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Milliseconds since the Unix epoch, as MLflow's timestamps.
pub(crate) fn millis_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> LoggerError {
    LoggerError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> LoggerError {
    LoggerError::Invalid {
        what: what.into(),
        message: message.into(),
    }
}

/// What a PNG's IHDR chunk says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PngHeader {
    pub width: u32,
    pub height: u32,
    /// PNG colour type: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA.
    pub color_type: u8,
}

impl PngHeader {
    /// TensorBoard's `Summary.Image.colorspace`: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
    pub fn tensorboard_colorspace(&self) -> i32 {
        match self.color_type {
            0 => 1,
            4 => 2,
            6 => 4,
            _ => 3, // RGB and palette images decode to RGB
        }
    }
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// Reads the size and colour type of a PNG, and checks them against the `Figure`'s fields.
pub(crate) fn check_figure(title: &str, figure: &Figure) -> Result<PngHeader, LoggerError> {
    let png = &figure.png;
    let what = || format!("figure {title:?}");
    if png.len() < 33 || png[..8] != PNG_SIGNATURE || &png[12..16] != b"IHDR" {
        return Err(invalid(
            what(),
            format!("not a PNG file ({} bytes)", png.len()),
        ));
    }
    let be = |i: usize| u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]);
    let header = PngHeader {
        width: be(16),
        height: be(20),
        color_type: png[25],
    };
    if header.width != figure.width || header.height != figure.height {
        return Err(invalid(
            what(),
            format!(
                "the PNG is {}x{} but the figure says {}x{}",
                header.width, header.height, figure.width, figure.height
            ),
        ));
    }
    Ok(header)
}

/// Turns a title such as `"image_logs/top 5 worst by OVERALL_cmc_1"` into relative path
/// components that stay inside the target directory: `/` separates folders, other characters
/// outside `[A-Za-z0-9 ._-]` become `_`, and empty, `.` or `..` components become `_`.
pub(crate) fn safe_components(title: &str) -> Vec<String> {
    let parts: Vec<String> = title
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| {
            let s: String = c
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() || matches!(ch, ' ' | '.' | '_' | '-') {
                        ch
                    } else {
                        '_'
                    }
                })
                .collect();
            let trimmed = s.trim().to_string();
            if trimmed.is_empty() || trimmed.chars().all(|c| c == '.') {
                "_".to_string()
            } else {
                trimmed
            }
        })
        .collect();
    if parts.is_empty() {
        vec!["_".to_string()]
    } else {
        parts
    }
}

/// The relative path (with `/`) where a figure of `title` at `step` is stored, both in the run
/// directory (under `figures/`) and among MLflow artifacts.
pub(crate) fn figure_relpath(title: &str, step: u64) -> String {
    let mut parts = safe_components(title);
    parts.push(format!("step_{step:06}.png"));
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_cannot_escape() {
        assert_eq!(
            safe_components("../../etc/passwd"),
            vec!["_", "_", "etc", "passwd"]
        );
        assert_eq!(safe_components("/abs//x"), vec!["abs", "x"]);
        assert_eq!(safe_components(""), vec!["_"]);
        assert_eq!(
            safe_components("image_logs/top 5 worst by OVERALL_cmc_1"),
            vec!["image_logs", "top 5 worst by OVERALL_cmc_1"]
        );
        assert_eq!(safe_components("a:b*c"), vec!["a_b_c"]);
        assert_eq!(figure_relpath("x/y", 7), "x/y/step_000007.png");
    }

    #[test]
    fn png_header_is_checked_against_the_figure() {
        let img = image::RgbImage::new(3, 2);
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let ok = Figure {
            width: 3,
            height: 2,
            png: png.clone(),
        };
        let h = check_figure("t", &ok).unwrap();
        assert_eq!((h.width, h.height, h.tensorboard_colorspace()), (3, 2, 3));
        let wrong = Figure {
            width: 2,
            height: 2,
            png,
        };
        assert!(matches!(
            check_figure("t", &wrong),
            Err(LoggerError::Invalid { .. })
        ));
        let junk = Figure {
            width: 3,
            height: 2,
            png: b"GIF89a".to_vec(),
        };
        assert!(matches!(
            check_figure("t", &junk),
            Err(LoggerError::Invalid { .. })
        ));
    }
}
