//! Helpers shared by the kernel test files.

/// Deterministic values in [-1, 1) from `seed`, with exact extremes (-0.0, 1.0) sprinkled in.
pub fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match i % 97 {
                13 => -0.0,
                29 => 1.0,
                _ => ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0,
            }
        })
        .collect()
}
