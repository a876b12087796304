//! Deterministic test data without proptest: seeded fills and the sizes around tile edges.

/// The values that break numerical code most often, in the order a test should reach them:
/// signed zeros, the smallest normals and subnormals, magnitudes near overflow, and the unit.
pub const HARD_F32: [f32; 14] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    1.0e-40, // subnormal
    -1.0e-40,
    f32::EPSILON,
    1.0e30,
    -1.0e30,
    3.0e38,
    -3.0e38,
    0.5,
];

/// Marsaglia's xorshift64 from `state` (made odd, so never the all-zero fixed point).
fn xorshift(state: u64) -> impl FnMut() -> u64 {
    let mut s = state | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// Values in `[-1, 1)` from `seed` (xorshift), with an exact `-0.0` and `1.0` every 97
/// elements so sign and unit handling are exercised on every size.
///
/// ```
/// let a = lithe_check::fill(200, 7);
/// assert_eq!(a, lithe_check::fill(200, 7));
/// assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
/// assert!(a[13] == 0.0 && a[13].is_sign_negative());
/// ```
pub fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut next = xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (0..len)
        .map(|i| {
            let s = next();
            match i % 97 {
                13 => -0.0,
                29 => 1.0,
                _ => ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0,
            }
        })
        .collect()
}

/// Int8 operands from `seed` covering the whole range, with the saturation values -127 and
/// 127 (and -128, which symmetric quantization never produces but a raw caller may) every few
/// elements, where a `u8 x i8` pair-sum overflows an i16 first.
///
/// ```
/// let a = lithe_check::fill_i8(64, 3);
/// assert!(a.contains(&127) && a.contains(&-127) && a.contains(&-128));
/// ```
pub fn fill_i8(len: usize, seed: u64) -> Vec<i8> {
    let mut next = xorshift(seed.wrapping_mul(0xD134_2543_DE82_EF95));
    (0..len)
        .map(|i| {
            let s = next();
            match i % 11 {
                3 => 127,
                7 => -127,
                10 => -128,
                _ => (s >> 56) as u8 as i8,
            }
        })
        .collect()
}

/// Sizes around a tile edge: 1, a few primes, `tile - 1`, `tile`, `tile + 1`, `2 tile + 1`,
/// sorted and without repeats.
///
/// ```
/// assert_eq!(lithe_check::edge_sizes(8), vec![1, 2, 3, 7, 8, 9, 17, 31, 67]);
/// ```
pub fn edge_sizes(tile: usize) -> Vec<usize> {
    let mut v = vec![
        1,
        2,
        3,
        7,
        tile.saturating_sub(1).max(1),
        tile.max(1),
        tile + 1,
        2 * tile + 1,
        31,
        67,
    ];
    v.sort_unstable();
    v.dedup();
    v
}
