//! IDX (MNIST) buffers: parsed as images and labels, plain and after gunzip. A header that
//! claims more data than the buffer holds must be an error before anything is allocated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lithe::data::idx::{maybe_gunzip, parse_images, parse_labels};

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(inflated) = maybe_gunzip(data.to_vec(), "fuzz") {
        check(&inflated);
    }
});

fn check(bytes: &[u8]) {
    if let Ok(images) = parse_images(bytes, "fuzz") {
        assert_eq!(
            images.pixels.len(),
            images.count * images.rows * images.cols,
            "pixels match the header"
        );
    }
    if let Ok(labels) = parse_labels(bytes, "fuzz") {
        assert_eq!(labels.len() + 8, bytes.len(), "labels are the body");
    }
}
