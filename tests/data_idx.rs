//! IDX reading (plain and gzipped, the MNIST folder layout) on the shipped 8x8 digits, and the
//! shuffling batcher.

use flate2::Compression;
use flate2::write::GzEncoder;
use lithe::Error;
use lithe::data::idx::{read_images, read_labels};
use lithe::data::{Batcher, load_idx_dataset, load_idx_split};
use std::io::Write;
use std::path::{Path, PathBuf};

fn digits_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits8x8")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lithe-data-idx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn shipped_digits_read_plain() {
    let split = load_idx_split(&digits_dir(), "digits").unwrap();
    let img = &split.images;
    assert_eq!((img.count, img.rows, img.cols), (1797, 8, 8));
    assert_eq!(img.pixels.len(), 1797 * 64);
    assert!(img.pixels.iter().all(|&p| p <= 16));
    assert_eq!(&split.labels[..12], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
}

#[test]
fn gzipped_and_plain_files_read_the_same_and_the_mnist_layout_loads() {
    let src = digits_dir();
    let images = std::fs::read(src.join("digits-images-idx3-ubyte")).unwrap();
    let labels = std::fs::read(src.join("digits-labels-idx1-ubyte")).unwrap();
    let dir = scratch("layout");
    // Train gzipped (as MNIST / Fashion-MNIST ship), test plain.
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gzip(&images)).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gzip(&labels)).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &labels).unwrap();

    let plain = read_images(&src.join("digits-images-idx3-ubyte")).unwrap();
    assert_eq!(
        read_images(&dir.join("train-images-idx3-ubyte.gz")).unwrap(),
        plain
    );
    assert_eq!(
        read_labels(&dir.join("train-labels-idx1-ubyte.gz")).unwrap(),
        read_labels(&src.join("digits-labels-idx1-ubyte")).unwrap()
    );
    let ds = load_idx_dataset(&dir).unwrap();
    assert_eq!(ds.train, ds.test);
    assert_eq!(ds.train.images, plain);

    // A gzip stream cut short, or garbage after the gzip magic: a format error naming the file.
    let gz = gzip(&images);
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), &gz[..gz.len() / 2]).unwrap();
    match load_idx_dataset(&dir) {
        Err(Error::Format { what, .. }) => assert!(what.contains("train-images"), "{what}"),
        other => panic!("expected a format error, got {other:?}"),
    }
    std::fs::write(
        dir.join("train-images-idx3-ubyte.gz"),
        [0x1f, 0x8b, 1, 2, 3],
    )
    .unwrap();
    assert!(matches!(load_idx_dataset(&dir), Err(Error::Format { .. })));

    // Labels that do not match the images in number.
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gzip(&images)).unwrap();
    let mut short = labels.clone();
    short[7] -= 1; // count 1796
    short.pop();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gzip(&short)).unwrap();
    match load_idx_dataset(&dir) {
        Err(Error::Format { msg, .. }) => assert!(msg.contains("1796 labels"), "{msg}"),
        other => panic!("expected a format error, got {other:?}"),
    }

    // A missing split names both names it tried.
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gzip(&labels)).unwrap();
    match load_idx_dataset(&dir) {
        Err(Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
            assert!(e.to_string().contains("t10k-labels-idx1-ubyte.gz"), "{e}");
        }
        other => panic!("expected a not-found error, got {other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Fashion-MNIST as Debian installs it (`apt-get install dataset-fashion-mnist`).
#[test]
#[ignore = "needs /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)"]
fn fashion_mnist_from_debian() {
    let ds = load_idx_dataset(Path::new("/usr/share/datasets/fashion-mnist")).unwrap();
    assert_eq!(
        (ds.train.images.count, ds.test.images.count),
        (60000, 10000)
    );
    assert_eq!((ds.train.images.rows, ds.train.images.cols), (28, 28));
    assert_eq!(&ds.train.labels[..4], &[9, 0, 0, 3]);
}

fn is_permutation(batches: &[Vec<usize>], len: usize) -> bool {
    let mut all: Vec<usize> = batches.concat();
    all.sort_unstable();
    all == (0..len).collect::<Vec<_>>()
}

#[test]
fn batcher_gives_a_fresh_seeded_permutation_each_epoch() {
    let mut b = Batcher::new(103, 10, 42).unwrap();
    assert_eq!(b.batches_per_epoch(), 11);
    let e1: Vec<Vec<usize>> = b.next_epoch().map(<[usize]>::to_vec).collect();
    let e2: Vec<Vec<usize>> = b.next_epoch().map(<[usize]>::to_vec).collect();
    assert_eq!(b.epochs(), 2);
    for e in [&e1, &e2] {
        assert_eq!(e.len(), 11);
        assert!(e[..10].iter().all(|batch| batch.len() == 10));
        assert_eq!(e[10].len(), 3);
        assert!(is_permutation(e, 103));
    }
    assert_ne!(e1, e2);
    assert_ne!(e1.concat(), (0..103).collect::<Vec<_>>());

    // Same seed, same epochs; another seed, another order.
    let mut again = Batcher::new(103, 10, 42).unwrap();
    let a1: Vec<Vec<usize>> = again.next_epoch().map(<[usize]>::to_vec).collect();
    let a2: Vec<Vec<usize>> = again.next_epoch().map(<[usize]>::to_vec).collect();
    assert_eq!((a1, a2), (e1.clone(), e2));
    let mut other = Batcher::new(103, 10, 43).unwrap();
    assert_ne!(other.next_epoch().next().unwrap(), e1[0].as_slice());
}

#[test]
fn batcher_drop_last_and_edge_sizes() {
    let mut b = Batcher::new(103, 10, 1).unwrap().drop_last(true);
    assert_eq!(b.batches_per_epoch(), 10);
    let e: Vec<Vec<usize>> = b.next_epoch().map(<[usize]>::to_vec).collect();
    assert_eq!(e.len(), 10);
    assert!(e.iter().all(|batch| batch.len() == 10));
    let mut seen = e.concat();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 100);

    let mut big = Batcher::new(5, 8, 1).unwrap();
    assert_eq!(
        big.next_epoch().map(<[usize]>::len).collect::<Vec<_>>(),
        [5]
    );
    let mut big = Batcher::new(5, 8, 1).unwrap().drop_last(true);
    assert_eq!(big.batches_per_epoch(), 0);
    assert_eq!(big.next_epoch().count(), 0);
    let mut empty = Batcher::new(0, 4, 1).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.next_epoch().count(), 0);
    assert!(matches!(
        Batcher::new(10, 0, 1),
        Err(Error::InvalidArgument { .. })
    ));
}
