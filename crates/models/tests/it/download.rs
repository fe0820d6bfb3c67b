//! The downloader against a local HTTP server on 127.0.0.1 serving a checkpoint made here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use burn::prelude::*;
use md5::{Digest, Md5};
use oml_interfaces::device::test_device;
use oml_interfaces::{ModelError, PretrainedEntry};
use oml_models::zoo::{DownloadOptions, download_to, file_digests};
use oml_models::{LinearTrivialDistanceSiamese, LoadOptions, PairwiseModel};

use crate::common::*;

/// Serves `body` at `/ok`, `body` with one byte flipped at `/bad`, a `Content-Length` of the whole
/// body but only half of it at `/trunc`, and 404 elsewhere. Returns the base URL.
fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, payload, declared) = match path.as_str() {
                "/ok" => ("200 OK", body.clone(), body.len()),
                "/bad" => {
                    let mut b = body.clone();
                    b[body.len() / 2] ^= 0xFF;
                    ("200 OK", b, body.len())
                }
                "/trunc" => ("200 OK", body[..body.len() / 2].to_vec(), body.len()),
                _ => ("404 Not Found", b"missing".to_vec(), 7),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&payload);
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    base
}

fn entry(urls: Vec<String>, md5_prefix: &str) -> &'static PretrainedEntry {
    let urls: Vec<&'static str> = urls
        .into_iter()
        .map(|u| &*Box::leak(u.into_boxed_str()))
        .collect();
    Box::leak(Box::new(PretrainedEntry {
        key: "linear_test",
        urls: Box::leak(urls.into_boxed_slice()),
        md5_prefix: Box::leak(md5_prefix.to_string().into_boxed_str()),
        file_name: "linear_test.ckpt",
        init_args: "{}",
    }))
}

fn quiet() -> DownloadOptions {
    DownloadOptions {
        progress: false,
        ..DownloadOptions::default()
    }
}

/// A `LinearTrivialDistanceSiamese` checkpoint (Lightning layout) with a known projection.
fn checkpoint(dir: &Path) -> (Vec<u8>, Vec<f32>) {
    let w = values(16, 31, 1.0);
    let path = dir.join("src.ckpt");
    torch_save(
        &path,
        &[TorchTensor::f32("model.proj.weight", &[4, 4], w.clone())],
        Nesting::Lightning(&[]),
    );
    (std::fs::read(path).unwrap(), w)
}

fn download_error(e: ModelError) -> (String, String, String) {
    match e {
        ModelError::Download { url, path, message } => (url, path, message),
        other => panic!("expected a download error, got {other}"),
    }
}

#[test]
fn right_hash_downloads_atomically_and_the_checkpoint_loads() {
    let src = tempfile::tempdir().unwrap();
    let (bytes, w) = checkpoint(src.path());
    let md5 = format!("{:x}", Md5::digest(&bytes));
    let base = serve(bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    // The first URL fails (404); the second is used, as OML's `download_checkpoint_one_of`.
    let e = entry(
        vec![format!("{base}/gone"), format!("{base}/ok")],
        &md5[..8],
    );
    let path = download_to(e, cache.path(), &quiet()).unwrap();
    assert_eq!(path, cache.path().join("linear_test.ckpt"));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(file_digests(&path).unwrap().0, md5);
    // Only the final file is left: no temporary parts.
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);

    // The downloaded file goes through the same loading path as any checkpoint.
    let device = test_device();
    let model = LinearTrivialDistanceSiamese::new(4, false, 0.0, &device).unwrap();
    let (model, report) =
        oml_models::checkpoint::load_pytorch(model, &path, &LoadOptions::default()).unwrap();
    assert_eq!(report.stripped_prefix, "model.");
    // PyTorch y = W x: the distance between e0 and e1 is the norm of W's first column minus its second.
    let e0 = Tensor::<4>::from_data([[[[1.0f32]], [[0.0]], [[0.0]], [[0.0]]]], &device);
    let e1 = Tensor::<4>::from_data([[[[0.0f32]], [[1.0]], [[0.0]], [[0.0]]]], &device);
    let got = host(model.predict(e0, e1))[0];
    let want = (0..4)
        .map(|r| (w[r * 4] - w[r * 4 + 1]).powi(2))
        .sum::<f32>()
        .sqrt();
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");

    // A second call uses the cache: it succeeds with the server unreachable.
    let offline = entry(vec!["http://127.0.0.1:9/ok".to_string()], &md5[..8]);
    assert_eq!(download_to(offline, cache.path(), &quiet()).unwrap(), path);
}

#[test]
fn wrong_hash_is_rejected_and_nothing_is_kept() {
    let src = tempfile::tempdir().unwrap();
    let (bytes, _) = checkpoint(src.path());
    let md5 = format!("{:x}", Md5::digest(&bytes));
    let base = serve(bytes);
    let cache = tempfile::tempdir().unwrap();
    let (url, path, message) = download_error(
        download_to(
            entry(vec![format!("{base}/bad")], &md5[..6]),
            cache.path(),
            &quiet(),
        )
        .unwrap_err(),
    );
    assert!(url.ends_with("/bad"));
    assert!(
        message.contains("hash mismatch") && message.contains(&md5[..6]),
        "{message}"
    );
    assert!(
        message.contains(&path) && message.contains("place it at"),
        "{message}"
    );
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);

    // A cached file with the wrong hash is not used: it is replaced by a good download.
    std::fs::write(cache.path().join("linear_test.ckpt"), b"stale").unwrap();
    let good = download_to(
        entry(vec![format!("{base}/ok")], &md5[..6]),
        cache.path(),
        &quiet(),
    )
    .unwrap();
    assert_eq!(file_digests(&good).unwrap().0, md5);
}

#[test]
fn truncated_transfer_is_an_error() {
    let src = tempfile::tempdir().unwrap();
    let (bytes, _) = checkpoint(src.path());
    let base = serve(bytes);
    let cache = tempfile::tempdir().unwrap();
    let (_, _, message) = download_error(
        download_to(
            entry(vec![format!("{base}/trunc")], ""),
            cache.path(),
            &quiet(),
        )
        .unwrap_err(),
    );
    assert!(
        message.contains("truncated") || message.contains("broken"),
        "{message}"
    );
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn server_down_gives_the_offline_hint_with_the_path() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cache = tempfile::tempdir().unwrap();
    let e = entry(vec![format!("http://127.0.0.1:{port}/ok")], "abc123");
    let (_, path, message) = download_error(download_to(e, cache.path(), &quiet()).unwrap_err());
    let expected = cache.path().join("linear_test.ckpt");
    assert_eq!(path, expected.display().to_string());
    assert!(
        message.contains("offline") && message.contains(&path) && message.contains("`abc123`"),
        "{message}"
    );
}
