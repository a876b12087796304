//! Images: the in-memory set, the shipped digits, IDX folders, and the ViT loop.

use super::{Event, History, StepPhase, TrainOptions, count_correct, fit_with_hook};
use crate::autograd::{CrossEntropyOptions, Graph, Var};
use crate::data::idx::{self, IdxSplit};
use crate::error::{Error, Result};
use crate::nn::{Module, Vit, VitConfig};
use crate::optim::is_bias_or_norm;
use crate::tensor::{Rng, Tensor};
use std::path::Path;

const DIGITS_IMAGES: &[u8] = include_bytes!("../../data/digits8x8/digits-images-idx3-ubyte");
const DIGITS_LABELS: &[u8] = include_bytes!("../../data/digits8x8/digits-labels-idx1-ubyte");

/// Square images in memory: `pixels` is `[n, channels, side, side]` row-major in `[0, 1]`.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// Pixel values, `[n, channels, side, side]`.
    pub pixels: Vec<f32>,
    /// The class of each image.
    pub labels: Vec<usize>,
    /// Channels per image.
    pub channels: usize,
    /// Image side in pixels.
    pub side: usize,
}

impl ImageSet {
    /// From an IDX split (one channel), dividing pixels by `max_value` (255 for MNIST-style
    /// files, 16 for the 8x8 digits), keeping only the images at `rows` (all when `None`).
    /// [`Error::Index`] for a row beyond the images (or labels) of the split.
    pub fn from_idx(split: &IdxSplit, max_value: f32, rows: Option<&[usize]>) -> Result<Self> {
        let im = &split.images;
        if im.rows != im.cols {
            return Err(Error::invalid(
                "ImageSet::from_idx",
                format!("images are {}x{}, not square", im.rows, im.cols),
            ));
        }
        let all: Vec<usize>;
        let rows = match rows {
            Some(r) => r,
            None => {
                all = (0..im.count).collect();
                &all
            }
        };
        let per = im.rows * im.cols;
        // IdxImages and IdxSplit have public fields: check what indexing below relies on.
        let n = im.count.min(split.labels.len());
        if im.pixels.len() < n * per {
            return Err(Error::shape(
                "ImageSet::from_idx",
                format!("{} pixels for {n} images of {per}", im.pixels.len()),
            ));
        }
        if let Some(&r) = rows.iter().find(|&&r| r >= n) {
            return Err(Error::Index {
                op: "ImageSet::from_idx",
                index: r,
                size: n,
            });
        }
        let pixels = rows
            .iter()
            .flat_map(|&r| im.pixels[r * per..(r + 1) * per].iter())
            .map(|&p| p as f32 / max_value)
            .collect();
        Ok(ImageSet {
            pixels,
            labels: rows.iter().map(|&r| split.labels[r] as usize).collect(),
            channels: 1,
            side: im.rows,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes: the largest label plus one.
    pub fn num_classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |m| m + 1)
    }

    /// The images at `rows` as a `[rows.len(), channels, side, side]` tensor, and their labels.
    /// [`Error::Shape`] if `pixels` does not hold one image per label, [`Error::Index`] for a
    /// row beyond the last image (the fields are public, so nothing else guarantees either).
    pub fn batch(&self, rows: &[usize]) -> Result<(Tensor, Vec<usize>)> {
        const OP: &str = "ImageSet::batch";
        let per = self.channels * self.side * self.side;
        if Some(self.pixels.len()) != self.labels.len().checked_mul(per) {
            return Err(Error::shape(
                OP,
                format!(
                    "{} pixels for {} images of {}x{}x{}",
                    self.pixels.len(),
                    self.labels.len(),
                    self.channels,
                    self.side,
                    self.side
                ),
            ));
        }
        if let Some(&r) = rows.iter().find(|&&r| r >= self.labels.len()) {
            return Err(Error::Index {
                op: OP,
                index: r,
                size: self.labels.len(),
            });
        }
        let mut x = Vec::with_capacity(rows.len() * per);
        for &r in rows {
            x.extend_from_slice(&self.pixels[r * per..(r + 1) * per]);
        }
        let t = Tensor::from_vec(x, &[rows.len(), self.channels, self.side, self.side])?;
        Ok((t, rows.iter().map(|&r| self.labels[r]).collect()))
    }
}

/// The 8x8 digits that ship with lithe (UCI optdigits, 1797 images, compiled into the library),
/// split 80/20 into `(train, test)` by a shuffle seeded with `seed`.
pub fn digits_split(seed: u64) -> Result<(ImageSet, ImageSet)> {
    let split = IdxSplit {
        images: idx::parse_images(DIGITS_IMAGES, "digits images")?,
        labels: idx::parse_labels(DIGITS_LABELS, "digits labels")?,
    };
    let mut order: Vec<usize> = (0..split.images.count).collect();
    Rng::new(seed).shuffle(&mut order);
    let test = split.images.count / 5;
    Ok((
        ImageSet::from_idx(&split, 16.0, Some(&order[test..]))?,
        ImageSet::from_idx(&split, 16.0, Some(&order[..test]))?,
    ))
}

/// `(train, test)` from a folder with the four MNIST-style IDX files (gzipped or not). Pixels
/// are divided by 255, or by 16 when no training pixel exceeds 16 (the 8x8 digits' range).
pub fn load_image_dir(dir: &Path) -> Result<(ImageSet, ImageSet)> {
    let d = idx::load_idx_dataset(dir)?;
    let max = d.train.images.pixels.iter().copied().max().unwrap_or(0);
    let scale = if max <= 16 { 16.0 } else { 255.0 };
    Ok((
        ImageSet::from_idx(&d.train, scale, None)?,
        ImageSet::from_idx(&d.test, scale, None)?,
    ))
}

/// Test accuracy of `vit` on `data`, in batches of 256 on an inference graph.
pub fn evaluate_vit(vit: &Vit, data: &ImageSet) -> Result<f64> {
    evaluate_images("evaluate_vit", data, |g, x| vit.forward_logits(g, x))
}

/// Accuracy of `logits_of(graph, images) -> [B, classes]` on `data`, in batches of 256 on
/// inference graphs.
pub(crate) fn evaluate_images(
    op: &'static str,
    data: &ImageSet,
    logits_of: impl Fn(&Graph, Var) -> Result<Var>,
) -> Result<f64> {
    if data.is_empty() {
        return Err(Error::invalid(op, "the test set is empty"));
    }
    let rows: Vec<usize> = (0..data.len()).collect();
    let mut correct = 0;
    for chunk in rows.chunks(256) {
        let (x, y) = data.batch(chunk)?;
        let g = Graph::inference();
        let logits = g.value(logits_of(&g, g.constant(x))?)?;
        let classes = *logits.shape().last().unwrap_or(&1);
        correct += count_correct(logits.data(), classes, &y);
    }
    Ok(correct as f64 / data.len() as f64)
}

/// [`Error::InvalidArgument`] unless the images of both splits fit a model of config `c` and
/// every label is below its class count.
pub(crate) fn check_images(
    op: &'static str,
    c: &VitConfig,
    train: &ImageSet,
    test: &ImageSet,
) -> Result<()> {
    for (what, d) in [("train", train), ("test", test)] {
        if d.side != c.image_size || d.channels != c.num_channels {
            return Err(Error::invalid(
                op,
                format!(
                    "{what} images are {}x{}x{}, the model takes {}x{}x{}",
                    d.channels, d.side, d.side, c.num_channels, c.image_size, c.image_size
                ),
            ));
        }
        if d.num_classes() > c.num_labels {
            return Err(Error::invalid(
                op,
                format!(
                    "{what} labels go up to {}, the model has {} classes",
                    d.num_classes() - 1,
                    c.num_labels
                ),
            ));
        }
    }
    Ok(())
}

/// Trains `vit` on `train` with [`TrainOptions`], evaluating on `test` after each epoch.
/// Errors if the images do not fit the model or a label is not below its class count.
pub fn train_vit(
    vit: &Vit,
    train: &ImageSet,
    test: &ImageSet,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    check_images("train_vit", &vit.config, train, test)?;
    let mut no_hook = |_: StepPhase, _: usize| Ok(());
    fit_labels(vit, (train, test), opts, progress, &mut no_hook)
}

/// The loop of [`train_vit`], with `hook` around every optimizer step (pruning masks).
pub(crate) fn fit_labels(
    vit: &Vit,
    (train, test): (&ImageSet, &ImageSet),
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Event),
    hook: &mut dyn FnMut(StepPhase, usize) -> Result<()>,
) -> Result<History> {
    let ce = CrossEntropyOptions {
        label_smoothing: opts.label_smoothing,
        ..CrossEntropyOptions::default()
    };
    fit_with_hook(
        &vit.named_params(),
        &is_bias_or_norm,
        (train.len(), opts),
        progress,
        &mut |g, rows| {
            let (x, y) = train.batch(rows)?;
            let logits = vit.forward_logits(g, g.constant(x))?;
            g.cross_entropy(logits, &y, &ce)
        },
        &mut || evaluate_vit(vit, test),
        hook,
    )
}
