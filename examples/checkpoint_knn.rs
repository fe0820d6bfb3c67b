//! A PyTorch checkpoint in an oml-models extractor: embed a folder of images, then find each
//! image's nearest neighbours with the exact blocked kNN (oml-retrieval).
//!
//! ```text
//! cargo run -p oml-examples --example checkpoint_knn -- --checkpoint resnet18.pth --images photos/
//! ```
//!
//! The checkpoint is a torchvision ResNet-18 `state_dict` (`torch.save(model.state_dict(), ...)`,
//! or OML's own checkpoints, whose key prefixes are found and stripped). Without `--checkpoint`
//! it uses `resnet18.pth` from the extractor fixtures (`$OML_FIXTURES_DIR/extractors/`, else the
//! repository's `../shared/fixtures/extractors/`). Without `--images` it writes 12
//! Fashion-MNIST pictures (4 classes × 3) as PNG files and uses those.

use std::path::{Path, PathBuf};

use oml_datasets::batch::stack_images;
use oml_datasets::fashion_mnist::{CLASS_NAMES, read_idx_images, read_idx_labels};
use oml_datasets::transforms::Pipeline;
use oml_interfaces::Extractor;
use oml_models::{ResnetArch, ResnetExtractorConfig};
use oml_retrieval::{ExactKnn, KnnConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = oml_examples::device()?;
    let checkpoint = match oml_examples::arg("checkpoint", String::new())? {
        c if !c.is_empty() => PathBuf::from(c),
        _ => fixture_checkpoint(),
    };
    if !checkpoint.is_file() {
        return Err(format!(
            "no checkpoint at {}: pass --checkpoint with a ResNet-18 state_dict, e.g. from \
             torchvision: torch.save(torchvision.models.resnet18(weights=\"IMAGENET1K_V1\")\
             .state_dict(), \"resnet18.pth\")",
            checkpoint.display()
        )
        .into());
    }
    let demo = std::env::temp_dir().join(format!("oml-example-knn-{}", std::process::id()));
    let folder = match oml_examples::arg("images", String::new())? {
        f if !f.is_empty() => PathBuf::from(f),
        _ => demo_images(&demo)?,
    };
    let result = embed_and_search(&checkpoint, &folder, &device);
    std::fs::remove_dir_all(&demo).ok();
    result
}

fn embed_and_search(
    checkpoint: &Path,
    folder: &Path,
    device: &burn::tensor::Device,
) -> Result<(), Box<dyn std::error::Error>> {
    // The extractor with the checkpoint's weights (fc removed: 512-d pooled features).
    let extractor = ResnetExtractorConfig::new(ResnetArch::Resnet18)
        .with_weights(checkpoint.display().to_string())
        .build(device)?;
    // OML's input transforms for a torchvision ResNet: resize, centre crop 224, ImageNet norm.
    let key = "resnet18_imagenet1k_v1";
    let transforms = Pipeline::from_preprocessing(key, &oml_models::zoo::preprocessing(key)?);

    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("png" | "jpg" | "jpeg")
            )
        })
        .collect();
    files.sort();
    if files.len() < 2 {
        return Err(format!("{} holds fewer than 2 images", folder.display()).into());
    }

    // Embed in batches of 8; the extractor prepares its inference path once.
    let embed = extractor.inference();
    let mut embeddings = Vec::new();
    let mut rng = rand::rng();
    for chunk in files.chunks(8) {
        let mut tensors = Vec::with_capacity(chunk.len());
        for path in chunk {
            let img = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            tensors.push(transforms.apply(img.to_rgb8(), &mut rng));
        }
        let refs: Vec<_> = tensors.iter().collect();
        let batch = embed(stack_images(&refs, 0.0, device));
        embeddings.extend(oml_interfaces::cpu::host_f32(batch)?);
    }
    let dim = extractor.feat_dim();

    // Every image against every other (an item is never its own neighbour).
    let all: Vec<usize> = (0..files.len()).collect();
    let knn = ExactKnn::new(
        &embeddings,
        dim,
        &all,
        &all,
        None,
        device,
        &KnnConfig::default(),
    )?;
    let neighbours = knn.search(3, None, None)?;
    let name = |i: usize| {
        files[i]
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    for (q, (ids, dists)) in neighbours.ids.iter().zip(&neighbours.distances).enumerate() {
        let found: Vec<String> = ids
            .iter()
            .zip(dists)
            .map(|(&g, d)| format!("{} ({d:.2})", name(g)))
            .collect();
        println!("{} -> {}", name(q), found.join(", "));
    }
    Ok(())
}

fn fixture_checkpoint() -> PathBuf {
    let dir = std::env::var_os("OML_FIXTURES_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| oml_examples::repo_root().join("../shared/fixtures"));
    dir.join("extractors/resnet18.pth")
}

/// Writes 3 images of each of the first 4 Fashion-MNIST classes as `<class>_<n>.png`.
fn demo_images(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let data = oml_examples::repo_root().join("data/fashion-mnist");
    let imgs = read_idx_images(&data.join("t10k-images-idx3-ubyte.gz"))?;
    let labels = read_idx_labels(&data.join("t10k-labels-idx1-ubyte.gz"))?;
    let mut written = [0usize; 4];
    for (i, &label) in labels.iter().enumerate() {
        let class = usize::from(label);
        if class < 4 && written[class] < 3 {
            let gray = image::GrayImage::from_raw(28, 28, imgs.image(i).to_vec())
                .ok_or("an IDX image is not 28x28")?;
            let name = CLASS_NAMES[class].replace([' ', '/'], "-");
            gray.save(dir.join(format!("{name}_{}.png", written[class])))?;
            written[class] += 1;
        }
    }
    Ok(dir.to_path_buf())
}
