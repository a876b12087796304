//! proptest strategies that aim at the hard cases rather than the average one.
//!
//! Uniformly random sizes almost never land on 1, on a prime, or one off a tile edge, and
//! uniformly random floats almost never are `-0.0`, subnormal or near overflow. Each strategy
//! here mixes those cases in with a fixed weight, and still shrinks towards small, plain inputs.

use proptest::prelude::*;

use crate::values::HARD_F32;

const PRIMES: [usize; 12] = [2, 3, 5, 7, 11, 13, 17, 31, 61, 67, 127, 257];

/// A size in `1..=max` that is 1, a prime, a tile edge `t - 1, t, t + 1` or `2 t ± 1` of one
/// of `tiles`, or anything else, in roughly equal shares.
///
/// ```
/// use proptest::prelude::*;
/// use proptest::test_runner::TestRunner;
/// let mut runner = TestRunner::deterministic();
/// let strategy = lithe_check::strategy::dim(100, &[8, 16]);
/// for _ in 0..100 {
///     let d = strategy.new_tree(&mut runner).unwrap().current();
///     assert!((1..=100).contains(&d));
/// }
/// ```
pub fn dim(max: usize, tiles: &[usize]) -> BoxedStrategy<usize> {
    let max = max.max(1);
    let mut special: Vec<usize> = PRIMES.iter().copied().filter(|&p| p <= max).collect();
    special.push(1);
    for &t in tiles {
        for d in [
            t.saturating_sub(1),
            t,
            t + 1,
            (2 * t).saturating_sub(1),
            2 * t + 1,
        ] {
            if (1..=max).contains(&d) {
                special.push(d);
            }
        }
    }
    special.sort_unstable();
    special.dedup();
    prop_oneof![
        1 => Just(1usize),
        2 => proptest::sample::select(special),
        2 => 1..=max,
    ]
    .boxed()
}

/// A shape of `rank` dimensions, each from [`dim`].
pub fn shape(rank: usize, max: usize, tiles: &[usize]) -> BoxedStrategy<Vec<usize>> {
    proptest::collection::vec(dim(max, tiles), rank).boxed()
}

/// Which values a float strategy draws from; the plain part is uniform in `[-scale, scale)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Values {
    /// Half-width of the plain part.
    pub scale: f32,
    /// Mix in [`HARD_F32`]: signed zeros, subnormals, the smallest normals, magnitudes near
    /// overflow.
    pub hard: bool,
    /// Mix in NaN and ±infinity.
    pub nonfinite: bool,
}

impl Values {
    /// Uniform in `[-1, 1)`, with exact zeros and ±1 now and then.
    pub const fn unit() -> Self {
        Values {
            scale: 1.0,
            hard: false,
            nonfinite: false,
        }
    }

    /// [`Values::unit`] with the hard values mixed in.
    pub const fn hard() -> Self {
        Values {
            scale: 1.0,
            hard: true,
            nonfinite: false,
        }
    }

    /// The same values with NaN and ±infinity mixed in (for code that must propagate them).
    pub const fn with_nonfinite(mut self) -> Self {
        self.nonfinite = true;
        self
    }

    /// The plain part uniform in `[-scale, scale)`.
    pub const fn scaled(mut self, scale: f32) -> Self {
        self.scale = scale;
        self
    }
}

/// One float from `values`.
///
/// ```
/// use proptest::prelude::*;
/// use proptest::test_runner::TestRunner;
/// use lithe_check::strategy::{Values, f32_value};
/// let mut runner = TestRunner::deterministic();
/// let s = f32_value(Values::unit());
/// assert!((0..200).all(|_| s.new_tree(&mut runner).unwrap().current().abs() <= 1.0));
/// ```
pub fn f32_value(values: Values) -> BoxedStrategy<f32> {
    let scale = values.scale;
    let plain = (-1.0f32..1.0).prop_map(move |v| v * scale);
    let simple = proptest::sample::select(vec![0.0f32, 1.0, -1.0]).prop_map(move |v| v * scale);
    let hard_weight = if values.hard { 2 } else { 0 };
    let nonfinite_weight = if values.nonfinite { 1 } else { 0 };
    prop_oneof![
        8 => plain,
        1 => simple,
        hard_weight => proptest::sample::select(HARD_F32.to_vec()),
        nonfinite_weight => proptest::sample::select(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY]),
    ]
    .boxed()
}

/// `len` floats from `values`.
pub fn f32s(len: usize, values: Values) -> BoxedStrategy<Vec<f32>> {
    proptest::collection::vec(f32_value(values), len).boxed()
}

/// A shape from `shape` and row-major values from `values` to fill it.
///
/// ```
/// use proptest::prelude::*;
/// use proptest::test_runner::TestRunner;
/// use lithe_check::strategy::{Values, shape, tensor};
/// let mut runner = TestRunner::deterministic();
/// let (dims, data) = tensor(shape(2, 9, &[4]), Values::hard())
///     .new_tree(&mut runner).unwrap().current();
/// assert_eq!(data.len(), dims.iter().product::<usize>());
/// ```
pub fn tensor(
    shape: BoxedStrategy<Vec<usize>>,
    values: Values,
) -> BoxedStrategy<(Vec<usize>, Vec<f32>)> {
    shape
        .prop_flat_map(move |dims| {
            let len = dims.iter().product();
            (Just(dims), f32s(len, values))
        })
        .boxed()
}

/// One int8 operand: the saturation values ±127 (and -128 when `full_range`), 0 and ±1 often,
/// anything else otherwise.
pub fn i8_value(full_range: bool) -> BoxedStrategy<i8> {
    let mut edges = vec![127i8, -127, 0, 1, -1];
    if full_range {
        edges.push(-128);
    }
    let low = if full_range { -128i8 } else { -127 };
    prop_oneof![
        1 => proptest::sample::select(edges),
        2 => low..=127i8,
    ]
    .boxed()
}

/// `len` int8 operands from [`i8_value`].
pub fn i8s(len: usize, full_range: bool) -> BoxedStrategy<Vec<i8>> {
    proptest::collection::vec(i8_value(full_range), len).boxed()
}

/// `len` unsigned 8-bit activations (as VNNI's `u8 x i8` products take them), with 0 and 255
/// often: 255 x -128 pairs are where a 16-bit intermediate saturates.
pub fn u8s(len: usize) -> BoxedStrategy<Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![1 => proptest::sample::select(vec![0u8, 255, 128, 1]), 2 => any::<u8>()],
        len,
    )
    .boxed()
}
