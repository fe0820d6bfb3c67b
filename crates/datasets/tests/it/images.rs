//! The image pipeline end to end: IDX → PNG + CSV → dataset → batch tensor, decoding, crops,
//! cache, strictness, seeding, pairs, and the retrieval grid for a real retrieval result.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use oml_datasets::batch::{ImageBatcher, PairBatcher, sequential_batches};
use oml_datasets::dataframe::{ReadOptions, Split, read_dataframe};
use oml_datasets::fashion_mnist::{self, ConvertOptions, IdxImages, IdxSource};
use oml_datasets::images::{
    ImageBase, ImageLabeledDataset, ImageOptions, ImagePairDataset, ImageQueryGalleryDataset,
    ImageQueryGalleryLabeledDataset, decode_image,
};
use oml_datasets::transforms::{Normalize, Pipeline, Transform};
use oml_datasets::visualize::{self, BLUE, GRAY, GREEN, GridOptions, RED, RetrievalSide};
use oml_interfaces::{
    ExtraData, LabeledDataset, PairDataset, QueryGalleryDataset, RetrievalResults,
    VisualizableDataset,
};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn device() -> burn::prelude::Device {
    oml_interfaces::device::test_device()
}

fn random_idx(n: usize, seed: u64) -> (IdxImages, Vec<u8>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data = (0..n * 28 * 28).map(|_| rng.random::<u8>()).collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    (
        IdxImages {
            n,
            rows: 28,
            cols: 28,
            data,
        },
        labels,
    )
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn idx_to_png_csv_dataset_batch_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = random_idx(37, 1);
    let (ip, lp) = (
        dir.path().join("t10k-images-idx3-ubyte.gz"),
        dir.path().join("t10k-labels-idx1-ubyte.gz"),
    );
    fashion_mnist::write_idx_gz(&images, &labels, &ip, &lp).unwrap();
    let out = dir.path().join("fm");
    let report = fashion_mnist::convert_dir(dir.path(), &out, &ConvertOptions::default()).unwrap();
    assert_eq!(report.n_train + report.n_validation, 37);

    // The CSV passes OML's checks with the files under the root.
    let df = read_dataframe(&report.csv_path, &ReadOptions::with_root(&out)).unwrap();
    assert_eq!(df.len(), 37);
    for (i, r) in df.rows.iter().enumerate() {
        assert_eq!(r.label, i64::from(labels[i]));
        assert_eq!(
            r.split == Split::Train,
            labels[i] < 5,
            "unseen-class protocol"
        );
        assert_eq!((r.is_query, r.is_gallery), (labels[i] >= 5, labels[i] >= 5));
    }

    // Validation split → dataset → batches: pixels and labels come back.
    let val = df.split(Split::Validation);
    let opts = ImageOptions::with_transforms(Pipeline::new("plain", vec![], Normalize::IMAGENET));
    let ds = ImageQueryGalleryLabeledDataset::from_dataframe(&val, Some(&out), opts).unwrap();
    let source_index: Vec<usize> = (0..37).filter(|&i| labels[i] >= 5).collect();
    let dev = device();
    let mut seen = 0;
    for batch in sequential_batches(&ds, 8, &dev) {
        let batch = batch.unwrap();
        let [b, c, h, w] = batch.images.dims();
        assert_eq!((c, h, w), (3, 28, 28));
        let values: Vec<f32> = batch
            .images
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let got_labels = batch.labels.clone().unwrap();
        for k in 0..b {
            let idx = batch.indices[k];
            let src = source_index[idx];
            assert_eq!(got_labels[k], i64::from(labels[src]));
            let px = images.image(src);
            for ch in 0..3 {
                for p in [0usize, 5, 28 * 13 + 7, 28 * 28 - 1] {
                    let expect = (px[p] as f32 / 255.0 - Normalize::IMAGENET.mean[ch])
                        / Normalize::IMAGENET.std[ch];
                    let got = values[((k * 3 + ch) * 28 * 28) + p];
                    assert!(
                        (got - expect).abs() < 1e-5,
                        "item {idx} ch {ch} px {p}: {got} vs {expect}"
                    );
                }
            }
        }
        let lt: Vec<i64> = batch
            .labels_tensor()
            .unwrap()
            .into_data()
            .iter::<i64>()
            .collect();
        assert_eq!(lt, got_labels);
        seen += b;
    }
    assert_eq!(seen, source_index.len());
    assert_eq!(ds.query_ids(), (0..seen).collect::<Vec<_>>());
}

#[test]
fn shipped_fashion_mnist_test_split_converts() {
    let dir = workspace_root().join("data/fashion-mnist");
    let sources = fashion_mnist::sources_in(&dir).unwrap();
    assert_eq!(
        sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec!["t10k"]
    );
    let images = fashion_mnist::read_idx_images(&sources[0].images).unwrap();
    let labels = fashion_mnist::read_idx_labels(&sources[0].labels).unwrap();
    assert_eq!((images.n, images.rows, images.cols), (10_000, 28, 28));
    let mut counts = [0usize; 10];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [1000; 10]);

    let out = tempfile::tempdir().unwrap();
    let opts = ConvertOptions {
        limit: Some(300),
        with_categories: true,
        ..Default::default()
    };
    let report = fashion_mnist::convert(&sources, out.path(), &opts).unwrap();
    let df = read_dataframe(&report.csv_path, &ReadOptions::with_root(out.path())).unwrap();
    assert_eq!(df.len(), 300);
    let l2c = df.label_to_category().unwrap();
    assert_eq!(l2c[&9], "Ankle boot");
    // The PNG decodes back to the IDX pixels (grayscale replicated to RGB).
    let r = &df.rows[123];
    let img = decode_image(&out.path().join(&r.path)).unwrap();
    let src = images.image(123);
    assert!(img.pixels().enumerate().all(|(i, p)| p.0 == [src[i]; 3]));
}

#[test]
fn corrupt_idx_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, [0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28]).unwrap();
    assert!(
        fashion_mnist::read_idx_images(&p)
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );
    std::fs::write(&p, [0u8, 0, 8, 1, 0, 0, 0, 3, 1, 2]).unwrap();
    assert!(
        fashion_mnist::read_idx_labels(&p)
            .unwrap_err()
            .to_string()
            .contains("need 3 bytes")
    );
    std::fs::write(&p, b"garbage").unwrap();
    assert!(fashion_mnist::read_idx_labels(&p).is_err());
    let (images, _) = random_idx(3, 0);
    let src = IdxSource {
        name: "t".into(),
        images: dir.path().join("i.gz"),
        labels: dir.path().join("l.gz"),
    };
    fashion_mnist::write_idx_gz(&images, &[1, 2], &src.images, &src.labels).unwrap();
    let e = fashion_mnist::convert(&[src], dir.path(), &ConvertOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("3 images") && e.to_string().contains("2 labels"),
        "{e}"
    );
    assert!(fashion_mnist::sources_in(dir.path()).is_err());
}

fn save(dir: &Path, name: &str, img: image::DynamicImage) -> PathBuf {
    let p = dir.join(name);
    img.save(&p).unwrap();
    p
}

fn base(
    dir: &Path,
    names: &[&str],
    pipeline: Pipeline,
    f: impl FnOnce(&mut ImageOptions),
) -> ImageBase {
    let mut o = ImageOptions::with_transforms(pipeline);
    f(&mut o);
    ImageBase::new(
        names.iter().map(PathBuf::from).collect(),
        Some(dir),
        None,
        ExtraData::default(),
        o,
    )
    .unwrap()
}

fn identity() -> Pipeline {
    Pipeline::new("raw", vec![], Normalize::NONE)
}

#[test]
fn decoding_converts_gray_rgba_and_jpeg_to_rgb() {
    let dir = tempfile::tempdir().unwrap();
    save(
        dir.path(),
        "g.png",
        image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 2, image::Luma([77]))),
    );
    save(
        dir.path(),
        "a.png",
        image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            3,
            2,
            image::Rgba([10, 20, 30, 0]),
        )),
    );
    save(
        dir.path(),
        "c.jpg",
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            16,
            16,
            image::Rgb([200, 40, 40]),
        )),
    );
    // A PNG named .jpg: the format is sniffed from the content.
    save(
        dir.path(),
        "p.png",
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3]))),
    );
    std::fs::rename(dir.path().join("p.png"), dir.path().join("p.jpg")).unwrap();
    let b = base(
        dir.path(),
        &["g.png", "a.png", "c.jpg", "p.jpg"],
        identity(),
        |_| {},
    );
    let t = b.tensor(0).unwrap();
    assert!((0..3).all(|c| (t.at(c, 2, 1) - 77.0 / 255.0).abs() < 1e-6));
    let t = b.tensor(1).unwrap();
    assert_eq!(
        [t.at(0, 0, 0), t.at(1, 0, 0), t.at(2, 0, 0)].map(|v| (v * 255.0).round() as u8),
        [10, 20, 30]
    );
    let t = b.tensor(2).unwrap();
    let jpeg = [t.at(0, 8, 8), t.at(1, 8, 8), t.at(2, 8, 8)].map(|v| v * 255.0);
    assert!(
        (jpeg[0] - 200.0).abs() < 6.0 && (jpeg[1] - 40.0).abs() < 6.0,
        "{jpeg:?}"
    );
    assert_eq!((b.tensor(3).unwrap().at(2, 1, 1) * 255.0).round(), 3.0);
}

#[test]
fn bbox_crop_happens_before_transforms() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::RgbImage::from_fn(20, 10, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 0]));
    save(dir.path(), "i.png", image::DynamicImage::ImageRgb8(img));
    let o = ImageOptions::with_transforms(Pipeline::new(
        "resize",
        vec![Transform::Resize {
            width: 4,
            height: 2,
            filter: oml_datasets::transforms::Filter::Nearest,
        }],
        Normalize::NONE,
    ));
    let b = ImageBase::new(
        vec!["i.png".into(), "i.png".into()],
        Some(dir.path()),
        Some(vec![Some([4, 2, 8, 4]), None]),
        ExtraData::default(),
        o,
    )
    .unwrap();
    let t = b.tensor(0).unwrap();
    assert_eq!((t.width, t.height), (4, 2));
    // Nearest resize of the 4x2 crop is the crop itself: x 4..8, y 2..4.
    for y in 0..2 {
        for x in 0..4 {
            assert_eq!((t.at(0, x, y) * 255.0).round() as usize, (4 + x) * 10);
            assert_eq!((t.at(1, x, y) * 255.0).round() as usize, (2 + y) * 20);
        }
    }
    // The uncropped image is resized from the whole image: its right column comes from x >= 15,
    // which the crop (x < 8) cannot give.
    assert!(b.tensor(1).unwrap().at(0, 3, 0) * 255.0 >= 150.0);
    // A box outside the image is an error naming the file.
    let o = ImageOptions {
        strict: true,
        ..ImageOptions::with_transforms(identity())
    };
    let b = ImageBase::new(
        vec!["i.png".into()],
        Some(dir.path()),
        Some(vec![Some([30, 0, 40, 5])]),
        ExtraData::default(),
        o,
    )
    .unwrap();
    assert!(b.tensor(0).unwrap_err().to_string().contains("i.png"));
}

#[test]
fn cache_keeps_decoded_images() {
    let dir = tempfile::tempdir().unwrap();
    save(
        dir.path(),
        "a.png",
        image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(2, 2, image::Luma([9]))),
    );
    let cached = base(dir.path(), &["a.png"], identity(), |o| {
        o.cache_size = 10;
        o.strict = true;
    });
    let uncached = base(dir.path(), &["a.png"], identity(), |o| o.strict = true);
    assert_eq!(cached.preload(), 0);
    std::fs::remove_file(dir.path().join("a.png")).unwrap();
    assert_eq!((cached.tensor(0).unwrap().at(0, 1, 1) * 255.0).round(), 9.0);
    assert!(uncached.tensor(0).is_err());
}

#[test]
fn unreadable_images_stop_only_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.png"), b"not a png").unwrap();
    save(
        dir.path(),
        "ok.png",
        image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 4, image::Luma([1]))),
    );
    let csv = "label,path,split,is_query,is_gallery\n1,ok.png,train,,\n2,bad.png,train,,\n3,missing.png,train,,\n";
    std::fs::write(dir.path().join("df.csv"), csv).unwrap();
    let df = read_dataframe(dir.path().join("df.csv"), &ReadOptions::default()).unwrap();
    let pipeline = Pipeline::preset("norm_resize_torch", Some(8)).unwrap();

    let strict = ImageOptions {
        strict: true,
        ..ImageOptions::with_transforms(pipeline.clone())
    };
    let ds = ImageLabeledDataset::from_dataframe(&df, Some(dir.path()), strict).unwrap();
    assert!(ds.get(0).is_ok());
    assert!(ds.get(1).unwrap_err().to_string().contains("bad.png"));
    assert!(ds.get_many(vec![0, 1, 2]).is_err());

    let lenient = ImageLabeledDataset::from_dataframe(
        &df,
        Some(dir.path()),
        ImageOptions::with_transforms(pipeline),
    )
    .unwrap();
    let items = lenient.get_many(vec![0, 1, 2, 1]).unwrap();
    assert_eq!(
        items[1].image.data.len(),
        3 * 8 * 8,
        "stand-in has the pipeline's size"
    );
    let f = lenient.base().failures();
    assert_eq!(
        f.iter().map(|f| (f.index, f.row)).collect::<Vec<_>>(),
        vec![(1, 3), (2, 4)]
    );
    assert!(f[0].message.contains("bad.png") && f[1].message.contains("missing.png"));
    assert_eq!(lenient.base().n_failures(), 2);
    // Out of range is an error, not a panic.
    assert!(lenient.get(3).is_err());
    assert!(lenient.get_many(vec![0, 9]).is_err());
}

/// `skip_broken_images`' library half: the unreadable rows are dropped and returned, each
/// naming its file and CSV row; without the opt-in they stay and loading them is an error.
#[test]
fn broken_images_are_dropped_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["ok.png", "v1.png", "v2.png"] {
        save(
            dir.path(),
            name,
            image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 4, image::Luma([9]))),
        );
    }
    std::fs::write(dir.path().join("bad.png"), b"").unwrap();
    let csv = "label,path,split,is_query,is_gallery\n1,ok.png,train,,\n1,bad.png,train,,\n2,v1.png,validation,True,True\n2,v2.png,validation,True,True\n";
    std::fs::write(dir.path().join("df.csv"), csv).unwrap();
    let opts = || ImageOptions {
        strict: true,
        ..ImageOptions::with_transforms(Pipeline::preset("norm_resize_torch", Some(8)).unwrap())
    };
    let (data, skipped) = oml_datasets::images::retrieval_image_datasets_without_broken(
        dir.path(),
        "df.csv",
        opts(),
        opts(),
        ReadOptions::default(),
    )
    .unwrap();
    assert_eq!((data.train.len(), data.validation.len()), (1, 2));
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].row == 3 && skipped[0].message.contains("bad.png"),
        "{:?}",
        skipped[0].message
    );
    assert!(data.train.get_many(vec![0]).is_ok());
    let all = oml_datasets::images::retrieval_image_datasets(
        dir.path(),
        "df.csv",
        opts(),
        opts(),
        ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(all.train.len(), 2);
    assert!(
        all.train
            .get(1)
            .unwrap_err()
            .to_string()
            .contains("bad.png")
    );
}

fn fm_dataset(
    n: usize,
    pipeline: Pipeline,
) -> (
    tempfile::TempDir,
    ImageQueryGalleryLabeledDataset,
    IdxImages,
    Vec<u8>,
) {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = random_idx(n, 7);
    let src = IdxSource {
        name: "t10k".into(),
        images: dir.path().join("i.gz"),
        labels: dir.path().join("l.gz"),
    };
    fashion_mnist::write_idx_gz(&images, &labels, &src.images, &src.labels).unwrap();
    let opts = ConvertOptions {
        train_classes: vec![],
        ..Default::default()
    };
    let report = fashion_mnist::convert(&[src], dir.path(), &opts).unwrap();
    let ds = ImageQueryGalleryLabeledDataset::from_dataframe(
        &report.dataframe,
        Some(dir.path()),
        ImageOptions::with_transforms(pipeline),
    )
    .unwrap();
    (dir, ds, images, labels)
}

#[test]
fn parallel_loading_equals_sequential_and_augmentations_are_seeded() {
    let (_dir, ds, _, _) = fm_dataset(40, Pipeline::preset("augs_light", Some(20)).unwrap());
    let idx: Vec<usize> = (0..40).rev().collect();
    let par = ds.get_many(idx.clone()).unwrap();
    let seq: Vec<_> = idx.iter().map(|&i| ds.get(i).unwrap()).collect();
    assert_eq!(par, seq);
    assert_eq!(par.iter().map(|i| i.index).collect::<Vec<_>>(), idx);
    ds.base().set_epoch(1);
    let epoch1 = ds.get(5).unwrap();
    assert_ne!(
        epoch1.image, seq[34].image,
        "another epoch augments differently"
    );
    ds.base().set_epoch(0);
    assert_eq!(ds.get(5).unwrap(), seq[34]);
}

#[test]
fn unlabeled_and_pair_datasets() {
    let (_dir, ds, images, _) = fm_dataset(12, Pipeline::new("raw", vec![], Normalize::NONE));
    let unl = ImageQueryGalleryDataset::all_vs_all(ds.base().clone());
    assert_eq!(unl.get(3).unwrap().label, None);
    assert_eq!(unl.gallery_ids().len(), 12);
    assert_eq!(ds.labels().len(), 12);

    let pairs = ImagePairDataset::new(ds.base().clone(), vec![(0, 1), (5, 2), (11, 11)]).unwrap();
    assert_eq!(pairs.pair_ids()[1], (5, 2));
    let batch = PairBatcher::default().batch(pairs.get_many(vec![0, 1, 2]).unwrap(), &device());
    assert_eq!(batch.first.dims(), [3, 3, 28, 28]);
    let second: Vec<f32> = batch
        .second
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    // Pair 1's second image is image 2: pixel 0 of channel 0.
    assert!((second[3 * 28 * 28] - images.image(2)[0] as f32 / 255.0).abs() < 1e-6);
    assert!(ImagePairDataset::new(ds.base().clone(), vec![(0, 12)]).is_err());
}

#[test]
fn mixed_sizes_are_refused_in_a_batch_and_padded_only_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    save(
        dir.path(),
        "a.png",
        image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 2, image::Luma([255]))),
    );
    save(
        dir.path(),
        "b.png",
        image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(2, 4, image::Luma([255]))),
    );
    let b = Arc::new(base(dir.path(), &["a.png", "b.png"], identity(), |_| {}));
    let ds = ImageLabeledDataset::new(b, vec![0, 1]).unwrap();
    // a batch of a data set must have one size: the odd image and the remedy are named
    let e = ds.get_many(vec![0, 1]).unwrap_err().to_string();
    assert!(
        e.contains("b.png") && e.contains("2×4") && e.contains("a.png") && e.contains("resize"),
        "{e}"
    );
    assert_eq!(ds.get_many(vec![1, 1]).unwrap().len(), 2);
    // items put together by hand are padded
    let items = vec![ds.get(0).unwrap(), ds.get(1).unwrap()];
    let batch = ImageBatcher { pad: -1.0 }.batch(items, &device());
    assert_eq!(batch.images.dims(), [2, 3, 4, 3]);
    let v: Vec<f32> = batch
        .images
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    // Item 0 (3x2): row 0 is white, row 3 is padding.
    assert_eq!(v[0], 1.0);
    assert_eq!(v[3 * 3], -1.0);
    // Item 1 (2x4): column 2 is padding.
    assert_eq!(v[3 * 4 * 3 + 2], -1.0);
    assert_eq!(v[3 * 4 * 3 + 1], 1.0);
}

#[test]
fn visualize_draws_frame_and_bbox() {
    let dir = tempfile::tempdir().unwrap();
    save(
        dir.path(),
        "i.png",
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            100,
            60,
            image::Rgb([50, 50, 50]),
        )),
    );
    let o = ImageOptions::default();
    let b = ImageBase::new(
        vec!["i.png".into()],
        Some(dir.path()),
        Some(vec![Some([20, 10, 60, 50])]),
        ExtraData::default(),
        o,
    )
    .unwrap();
    let ds = ImageLabeledDataset::new(Arc::new(b), vec![1]).unwrap();
    let v = ds.visualize(0, GREEN).unwrap();
    assert_eq!((v.width, v.height), (100, 100), "padded to a square");
    assert_eq!(v.pixel(0, 0), GREEN, "frame");
    // Frame thickness: half the bbox thickness max(3, int(0.05 * 160 / 2)) = 4.
    assert_eq!(v.pixel(50, 1), GREEN, "frame");
    assert_eq!(v.pixel(50, 2), [255, 255, 255], "padding below the frame");
    // The image sits at y 20..80; the box line is 4 pixels thick.
    assert_eq!(v.pixel(21, 20 + 30), GREEN, "bbox left edge");
    assert_eq!(v.pixel(30, 20 + 30), [50, 50, 50], "inside the box");
    assert_eq!(v.pixel(50, 10), [255, 255, 255], "white padding");
}

/// Brute-force exact kNN on raw pixels: an independent retrieval result.
fn brute_force(
    images: &IdxImages,
    labels: &[u8],
    q_ids: &[usize],
    g_ids: &[usize],
    top: usize,
) -> RetrievalResults {
    let mut dist = Vec::new();
    let mut ids = Vec::new();
    let mut gts = Vec::new();
    for &q in q_ids {
        let mut d: Vec<(f32, usize)> = g_ids
            .iter()
            .enumerate()
            .filter(|&(_, &g)| g != q)
            .map(|(gp, &g)| {
                let s: f32 = images
                    .image(q)
                    .iter()
                    .zip(images.image(g))
                    .map(|(a, b)| (*a as f32 - *b as f32).powi(2))
                    .sum();
                (s.sqrt() / 255.0, gp)
            })
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.truncate(top);
        dist.push(d.iter().map(|x| x.0).collect());
        ids.push(d.iter().map(|x| x.1).collect());
        gts.push(
            g_ids
                .iter()
                .enumerate()
                .filter(|&(_, &g)| g != q && labels[g] == labels[q])
                .map(|(gp, _)| gp)
                .collect(),
        );
    }
    RetrievalResults::new(dist, ids, Some(gts)).unwrap()
}

#[test]
fn retrieval_grid_for_a_real_result() {
    let dir = workspace_root().join("data/fashion-mnist");
    let sources = fashion_mnist::sources_in(&dir).unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = fashion_mnist::convert(
        &sources,
        out.path(),
        &ConvertOptions {
            limit: Some(120),
            ..Default::default()
        },
    )
    .unwrap();
    let images = fashion_mnist::read_idx_images(&sources[0].images).unwrap();
    let labels = fashion_mnist::read_idx_labels(&sources[0].labels).unwrap();
    let val = report.dataframe.split(Split::Validation);
    let ds = ImageQueryGalleryLabeledDataset::from_dataframe(
        &val,
        Some(out.path()),
        ImageOptions::default(),
    )
    .unwrap();
    let src: Vec<usize> = (0..120).filter(|&i| labels[i] >= 5).collect();
    let (q_ids, g_ids) = (ds.query_ids(), ds.gallery_ids());
    let q_src: Vec<usize> = q_ids.iter().map(|&i| src[i]).collect();
    let g_src: Vec<usize> = g_ids.iter().map(|&i| src[i]).collect();
    let rr = brute_force(&images, &labels, &q_src, &g_src, 10);

    let opts = GridOptions::default();
    let rows = [0usize, 3, 7];
    let side_q = RetrievalSide {
        dataset: &ds,
        ids: &q_ids,
    };
    let side_g = RetrievalSide {
        dataset: &ds,
        ids: &g_ids,
    };
    let grid = visualize::draw_retrieval_grid(&rr, side_q, side_g, &rows, &opts).unwrap();
    assert_eq!((grid.width, grid.height), opts.grid_size(3));
    assert_eq!(grid.width, 8 + 8 * (160 + 8));
    assert_eq!(opts.title_height(), 16, "a 13-pixel line and 3 pixels");
    assert_eq!(grid.height, 8 + 3 * (160 + 16 + 8));
    let mut n_green = 0;
    for (row, &q) in rows.iter().enumerate() {
        let (x, y) = opts.cell_origin(row, 0);
        assert_eq!(grid.pixel(x, y), BLUE);
        assert_eq!(grid.pixel(x + 159, y + 159), BLUE);
        let gt = rr.gt_ids(q).unwrap();
        for (k, id) in rr.retrieved_ids(q).iter().take(5).enumerate() {
            let (x, y) = opts.cell_origin(row, 1 + k);
            let expect = if gt.contains(id) { GREEN } else { RED };
            n_green += usize::from(expect == GREEN);
            assert_eq!(grid.pixel(x + 1, y + 80), expect, "row {row} item {k}");
        }
        for k in 0..2 {
            let (x, y) = opts.cell_origin(row, 6 + k);
            assert_eq!(grid.pixel(x + 80, y + 2), GRAY);
        }
        // The title strip has ink (dark, anti-aliased text) and the image area shows the item.
        let (x, y) = opts.cell_origin(row, 1);
        let ink = (x..x + 160)
            .flat_map(|xx| (y - opts.title_height()..y).map(move |yy| (xx, yy)))
            .filter(|&(a, b)| grid.pixel(a, b)[0] < 128)
            .count();
        assert!(ink > 30, "title of row {row}");
    }
    assert!(n_green > 0, "raw-pixel kNN finds some relevant items");
    // The query image's interior is the item's pixel, scaled: centre of the query cell.
    let (x, y) = opts.cell_origin(0, 0);
    let v = ds.visualize(q_ids[0], BLUE).unwrap();
    let s = 160.0 / v.width as f64;
    assert_eq!(
        grid.pixel(x + 80, y + 80),
        v.pixel((80.0 / s) as u32, (80.0 / s) as u32)
    );

    // PNG encoding round trip and the logger figure.
    let fig = visualize::to_figure(&grid).unwrap();
    let back = image::load_from_memory(&fig.png).unwrap().to_rgb8();
    assert_eq!(back.dimensions(), (grid.width, grid.height));
    assert_eq!(back.as_raw(), &grid.data);

    // The HTML report has one row per query and a frame colour per cell.
    let html =
        visualize::retrieval_html(&rr, side_q, side_g, &rows, &opts, "Worst <queries>").unwrap();
    assert_eq!(html.matches("<tr>").count(), 3);
    assert_eq!(html.matches("border-color:#0000ff").count(), 3);
    assert_eq!(html.matches("data:image/png;base64,").count(), 3 * 8);
    assert!(html.contains("Worst &lt;queries&gt;") && html.contains("Query #7"));

    // Without ground truth, retrieved items are black; bad positions are errors.
    let (d, i, _) = rr.clone().into_parts();
    let no_gt = RetrievalResults::new(d, i, None).unwrap();
    let g = visualize::draw_retrieval_grid(&no_gt, side_q, side_g, &[0], &opts).unwrap();
    let (x, y) = opts.cell_origin(0, 1);
    assert_eq!(g.pixel(x + 1, y + 80), [0, 0, 0]);
    assert!(visualize::draw_retrieval_grid(&rr, side_q, side_g, &[rr.n_queries()], &opts).is_err());
}
