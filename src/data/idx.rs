//! IDX files (LeCun's MNIST format): a big-endian header, then raw `u8` samples.
//!
//! Images: magic `0x00000803`, count, rows, cols, then `count * rows * cols` pixels.
//! Labels: magic `0x00000801`, count, then `count` labels.

use crate::error::{Error, Result};
use std::path::Path;

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

/// Reads an uncompressed IDX image file.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    parse_images(&std::fs::read(path)?, &path.display().to_string())
}

/// Reads an uncompressed IDX label file.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    parse_labels(&std::fs::read(path)?, &path.display().to_string())
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
}
