//! The one error type of `lithe-kernels`: everything a caller can get wrong.

use thiserror::Error;

/// What a kernel call can reject. A panic inside `lithe-kernels` is a bug, never a reply to input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// Operand dimensions do not agree (e.g. the inner dimensions of a GEMM).
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// A matrix view reaches past the end of its slice.
    #[error(
        "{what}: view of {rows}x{cols} with strides ({rs}, {cs}) needs {needed} elements, slice has {len}"
    )]
    OutOfBounds {
        /// Which operand.
        what: &'static str,
        /// Rows of the view.
        rows: usize,
        /// Columns of the view.
        cols: usize,
        /// Row stride.
        rs: usize,
        /// Column stride.
        cs: usize,
        /// Elements the view needs.
        needed: usize,
        /// Elements the slice has.
        len: usize,
    },
    /// An output view whose strides would make two elements share memory, or are not row- or
    /// column-major.
    #[error(
        "invalid output strides ({rs}, {cs}) for a {rows}x{cols} matrix: need a row- or column-major layout with leading dimension >= the contiguous extent"
    )]
    InvalidStrides {
        /// Rows of the view.
        rows: usize,
        /// Columns of the view.
        cols: usize,
        /// Row stride.
        rs: usize,
        /// Column stride.
        cs: usize,
    },
    /// `LITHE_ISA` (or an explicit option) names an instruction set this library does not know.
    #[error(
        "unknown instruction set {0:?}: expected one of scalar, avx2, avx512, neon (f32 and int8), avx-vnni, avx512-vnni, amx, vnni, neon-dotprod (int8)"
    )]
    UnknownIsa(String),
    /// The requested instruction set exists but this CPU (or this build target) lacks it.
    #[error("instruction set {0} is not supported on this CPU")]
    UnsupportedIsa(&'static str),
    /// A pre-packed operand was packed for other kernels (ISA or blocking) than the call runs.
    #[error("packed operand does not match the kernels: {0}")]
    PackedMismatch(String),
    /// An int8 operand holds -128: lithe's int8 kernels take values in [-127, 127] (symmetric
    /// quantization), which keeps every path's intermediate sums exact.
    #[error("{what}: value -128 at index {index}; int8 operands must lie in [-127, 127]")]
    I8OutOfRange {
        /// Which operand.
        what: &'static str,
        /// Index of the first offending element in the slice passed.
        index: usize,
    },
    /// Weights packed for one int8 path were used on another.
    #[error("weights were packed for the {packed} path, not {requested}")]
    PackedForOtherIsa {
        /// The path the weights were packed for.
        packed: &'static str,
        /// The path the call asked for.
        requested: &'static str,
    },
    /// A scale is zero, negative, infinite or NaN, or an input to quantize is not finite.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// A length argument does not match the buffers passed.
    #[error("length mismatch: {0}")]
    LengthMismatch(String),
}
