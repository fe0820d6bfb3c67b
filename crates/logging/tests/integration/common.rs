//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::Command;

use oml_logging::Figure;

/// A PNG of `w`×`h` whose pixel (x, y) is `(x*40, y*40, 200)`, and its figure.
pub fn test_figure(w: u32, h: u32) -> Figure {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 40) as u8, (y * 40) as u8, 200])
    });
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    Figure {
        width: w,
        height: h,
        png,
    }
}

/// A Python that can `import <module>`: `OML_TEST_PYTHON` if set, else `python3`.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("OML_TEST_PYTHON") {
        Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
        _ => vec![PathBuf::from("python3")],
    };
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
