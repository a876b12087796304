//! Helpers shared by the GPU test files: the device (or a skip) and a fresh random stream.
#![allow(dead_code)]

use lithe::cuda::{CudaDevice, f16};
use std::sync::atomic::{AtomicU64, Ordering};

/// Device 0, or `None` with a note on stderr when there is no usable GPU (the test then passes);
/// with `REQUIRE_CUDA=1` a missing device fails the test instead.
pub fn device(test: &str) -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("REQUIRE_CUDA").as_deref() == Ok("1") {
                panic!("{test}: REQUIRE_CUDA=1 but no usable CUDA device: {e}");
            }
            eprintln!("SKIP {test}: no usable CUDA device ({e})");
            None
        }
    }
}

/// splitmix64 seeded from the clock and a counter: fresh data on every call and run.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        static CTR: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t ^ CTR.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-a, a].
    pub fn sym(&mut self, a: f64) -> f64 {
        (2.0 * self.unit() - 1.0) * a
    }

    /// `n` values uniform in [-a, a], rounded to fp16.
    pub fn halfs(&mut self, n: usize, a: f64) -> Vec<f16> {
        (0..n).map(|_| f16::from_f64(self.sym(a))).collect()
    }

    /// `n` values uniform in [-a, a], never exactly zero (|x| >= 1e-3), rounded to fp16.
    pub fn vec(&mut self, n: usize, a: f32) -> Vec<f16> {
        (0..n)
            .map(|_| {
                let mut x = self.sym(a as f64) as f32;
                if x.abs() < 1e-3 {
                    x = 1e-3f32.copysign(x + 1e-9);
                }
                f16::from_f32(x)
            })
            .collect()
    }
}
