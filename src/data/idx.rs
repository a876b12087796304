//! IDX files (LeCun's MNIST format): a big-endian header, then raw `u8` samples.
//!
//! Images: magic `0x00000803`, count, rows, cols, then `count * rows * cols` pixels.
//! Labels: magic `0x00000801`, count, then `count` labels.
//!
//! The readers take plain or gzip-compressed files alike (MNIST and Fashion-MNIST ship as
//! `.gz`): a file that starts with the gzip magic `1f 8b` is inflated first.
//! [`load_idx_dataset`] finds the four files of the MNIST / Fashion-MNIST layout in a folder.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// A set of grey images, row-major, one after another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixels.
    pub pixels: Vec<u8>,
}

fn be_u32(bytes: &[u8], at: usize, what: &str) -> Result<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| Error::Format {
            what: what.into(),
            msg: format!("header truncated at byte {at}"),
        })
}

fn check_body(bytes: &[u8], header: usize, body: usize, what: &str) -> Result<()> {
    if bytes.len() != header + body {
        return Err(Error::Format {
            what: what.into(),
            msg: format!(
                "header promises {body} bytes of data, file has {}",
                bytes.len().saturating_sub(header)
            ),
        });
    }
    Ok(())
}

/// Parses an uncompressed IDX image file.
pub fn parse_images(bytes: &[u8], what: &str) -> Result<IdxImages> {
    let magic = be_u32(bytes, 0, what)?;
    if magic != IMAGES_MAGIC {
        return Err(Error::Format {
            what: what.into(),
            msg: format!("magic {magic:#010x}, expected {IMAGES_MAGIC:#010x}"),
        });
    }
    let [count, rows, cols] = [4, 8, 12].map(|at| be_u32(bytes, at, what).map(|v| v as usize));
    let (count, rows, cols) = (count?, rows?, cols?);
    let body = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| Error::Format {
            what: what.into(),
            msg: "image dimensions overflow".into(),
        })?;
    check_body(bytes, 16, body, what)?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes[16..].to_vec(),
    })
}

/// Parses an uncompressed IDX label file.
pub fn parse_labels(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    let magic = be_u32(bytes, 0, what)?;
    if magic != LABELS_MAGIC {
        return Err(Error::Format {
            what: what.into(),
            msg: format!("magic {magic:#010x}, expected {LABELS_MAGIC:#010x}"),
        });
    }
    let count = be_u32(bytes, 4, what)? as usize;
    check_body(bytes, 8, count, what)?;
    Ok(bytes[8..].to_vec())
}

/// The gzip magic bytes (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The most bytes [`maybe_gunzip`] inflates: 1 GiB, twice the largest IDX data set in use
/// (EMNIST ByClass's training images, 550 MB). A file that inflates beyond it (a gzip bomb, a
/// corrupt stream) is an error, not an out-of-memory abort.
pub const MAX_GUNZIP_BYTES: u64 = 1 << 30;

/// `bytes`, inflated first if they are gzip-compressed (one or more gzip members).
/// [`Error::Format`] for a broken stream or more than [`MAX_GUNZIP_BYTES`] inflated.
pub fn maybe_gunzip(bytes: Vec<u8>, what: &str) -> Result<Vec<u8>> {
    gunzip_at_most(bytes, what, MAX_GUNZIP_BYTES)
}

fn gunzip_at_most(bytes: Vec<u8>, what: &str, limit: u64) -> Result<Vec<u8>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let format = |msg: String| Error::Format {
        what: what.into(),
        msg,
    };
    let mut out = Vec::new();
    // One byte past the limit tells a stream that ends exactly at it from one that goes on.
    flate2::read::MultiGzDecoder::new(bytes.as_slice())
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format(format!("gzip: {e}")))?;
    if out.len() as u64 > limit {
        return Err(format(format!("gzip: inflates to more than {limit} bytes")));
    }
    Ok(out)
}

/// Reads the file at `path`, inflating it if it is gzip-compressed.
fn read_maybe_gz(path: &Path) -> Result<(Vec<u8>, String)> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("{what}: {e}"))))?;
    Ok((maybe_gunzip(bytes, &what)?, what))
}

/// Reads an IDX image file, plain or gzip-compressed.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let (bytes, what) = read_maybe_gz(path)?;
    parse_images(&bytes, &what)
}

/// Reads an IDX label file, plain or gzip-compressed.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let (bytes, what) = read_maybe_gz(path)?;
    parse_labels(&bytes, &what)
}

/// Images with one label each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxSplit {
    /// The images.
    pub images: IdxImages,
    /// One label per image.
    pub labels: Vec<u8>,
}

/// The train and test splits of an MNIST-layout dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxDataset {
    /// `train-{images-idx3,labels-idx1}-ubyte[.gz]`.
    pub train: IdxSplit,
    /// `t10k-{images-idx3,labels-idx1}-ubyte[.gz]`.
    pub test: IdxSplit,
}

/// `dir/name` if it exists, else `dir/name.gz`, else [`Error::Io`] (not found) naming both.
fn find_plain_or_gz(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    for p in [&plain, &gz] {
        if p.is_file() {
            return Ok(p.clone());
        }
    }
    Err(Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("neither {} nor {} exists", plain.display(), gz.display()),
    )))
}

/// Loads `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` from `dir`, each plain
/// or with a `.gz` suffix (e.g. prefix `train`, `t10k`, or `digits` for the shipped 8x8
/// digits). [`Error::Format`] when the two files disagree on the number of samples.
pub fn load_idx_split(dir: &Path, prefix: &str) -> Result<IdxSplit> {
    let images = read_images(&find_plain_or_gz(
        dir,
        &format!("{prefix}-images-idx3-ubyte"),
    )?)?;
    let labels_path = find_plain_or_gz(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let labels = read_labels(&labels_path)?;
    if labels.len() != images.count {
        return Err(Error::Format {
            what: labels_path.display().to_string(),
            msg: format!(
                "{} labels for {} images of the same split",
                labels.len(),
                images.count
            ),
        });
    }
    Ok(IdxSplit { images, labels })
}

/// Loads an MNIST / Fashion-MNIST folder: the `train` and `t10k` splits, plain or gzipped (e.g.
/// `/usr/share/datasets/fashion-mnist/` from Debian's `dataset-fashion-mnist`).
pub fn load_idx_dataset(dir: &Path) -> Result<IdxDataset> {
    Ok(IdxDataset {
        train: load_idx_split(dir, "train")?,
        test: load_idx_split(dir, "t10k")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(count: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IMAGES_MAGIC, count, rows, cols] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend(std::iter::repeat_n(7u8, body));
        b
    }

    #[test]
    fn parses_images_and_labels() {
        let img = parse_images(&images(2, 3, 4, 24), "t").unwrap();
        assert_eq!(
            (img.count, img.rows, img.cols, img.pixels.len()),
            (2, 3, 4, 24)
        );
        let mut lab = LABELS_MAGIC.to_be_bytes().to_vec();
        lab.extend_from_slice(&3u32.to_be_bytes());
        lab.extend_from_slice(&[1, 2, 9]);
        assert_eq!(parse_labels(&lab, "t").unwrap(), vec![1, 2, 9]);
    }

    #[test]
    fn truncated_bad_magic_and_overflow_are_format_errors() {
        for bytes in [
            images(2, 3, 4, 23),
            images(2, 3, 4, 25),
            images(2, 3, 4, 24)[..10].to_vec(),
        ] {
            assert!(matches!(
                parse_images(&bytes, "t"),
                Err(Error::Format { .. })
            ));
        }
        let mut bad = images(1, 1, 1, 1);
        bad[3] = 0x01;
        assert!(matches!(parse_images(&bad, "t"), Err(Error::Format { .. })));
        assert!(matches!(
            parse_images(&images(u32::MAX, u32::MAX, u32::MAX, 0), "t"),
            Err(Error::Format { .. })
        ));
        assert!(matches!(
            parse_labels(&images(1, 1, 1, 1), "t"),
            Err(Error::Format { .. })
        ));
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn inflating_past_the_limit_is_an_error() {
        // 64 KiB of zeros compress to about 100 bytes: a small bomb against a small limit.
        let bomb = gzip(&vec![0u8; 64 << 10]);
        assert!(bomb.len() < 1024);
        let err = gunzip_at_most(bomb.clone(), "bomb.gz", 32 << 10).unwrap_err();
        assert!(
            err.to_string()
                .contains("inflates to more than 32768 bytes"),
            "{err}"
        );
        // At the limit exactly, and below it, the data comes back whole.
        let exact = gunzip_at_most(bomb.clone(), "bomb.gz", 64 << 10).unwrap();
        assert_eq!(exact.len(), 64 << 10);
        assert_eq!(maybe_gunzip(bomb, "bomb.gz").unwrap().len(), 64 << 10);
    }
}
