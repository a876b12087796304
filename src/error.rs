//! The one error type of `lithe`: everything a caller of the public API can get wrong.
//!
//! A shape that does not fit, an axis or index out of range, an empty input where the maths needs
//! at least one element, a non-finite loss handed to the backward pass: each is an [`enum@Error`]
//! variant, never a panic. A panic inside lithe is a bug in lithe.

use std::path::PathBuf;
use thiserror::Error;

/// What a `lithe` call can reject.
#[derive(Debug, Error)]
pub enum Error {
    /// Operand shapes do not fit the operation (non-broadcastable operands, inner dimensions of a
    /// matmul, a reshape that changes the element count, a `from_vec` with the wrong length...).
    #[error("{op}: shape mismatch: {msg}")]
    Shape {
        /// The operation that rejected its operands.
        op: &'static str,
        /// What did not fit.
        msg: String,
    },
    /// An axis argument is not smaller than the tensor's rank.
    #[error("{op}: axis {axis} out of range for a tensor of rank {rank}")]
    Axis {
        /// The operation.
        op: &'static str,
        /// The axis asked for.
        axis: usize,
        /// The rank of the tensor.
        rank: usize,
    },
    /// An index (a gather index, a token id, a class target, a slice bound) is out of range.
    #[error("{op}: index {index} out of range for a dimension of size {size}")]
    Index {
        /// The operation.
        op: &'static str,
        /// The offending index.
        index: usize,
        /// The size of the indexed dimension.
        size: usize,
    },
    /// The operation needs at least one element (a mean, a softmax row, a loss) and got none.
    #[error("{op}: empty input: {msg}")]
    Empty {
        /// The operation.
        op: &'static str,
        /// What was empty.
        msg: String,
    },
    /// A scalar argument is outside its documented range (a dropout probability, a label
    /// smoothing factor, a permutation that is not one...).
    #[error("{op}: invalid argument: {msg}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// A value that must be finite is NaN or infinite (e.g. the loss handed to `backward`).
    #[error("{op}: non-finite value: {msg}")]
    NonFinite {
        /// The operation.
        op: &'static str,
        /// Where the value was found.
        msg: String,
    },
    /// Misuse of the autograd tape: a `Var` from another graph, a backward pass from a value that
    /// does not depend on anything that requires a gradient.
    #[error("graph: {0}")]
    Graph(String),
    /// A kernel of `lithe-kernels` rejected its arguments.
    #[error(transparent)]
    Kernel(#[from] lithe_kernels::KernelError),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Opening, reading or writing the file at `path` failed (not found, permission, disk full...).
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file or buffer is not in the format it claims (bad magic, truncated, inconsistent
    /// header, invalid JSON, a config with a missing or ill-typed field).
    #[error("malformed {what}: {msg}")]
    Format {
        /// What was being read.
        what: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A strict load: a parameter of the module has no tensor in the checkpoint.
    #[error("missing tensor `{name}`: the checkpoint has no tensor for this parameter")]
    MissingTensor {
        /// The parameter's name (as the module names it).
        name: String,
    },
    /// A strict load: the checkpoint holds a tensor that no parameter of the module takes.
    #[error("unexpected tensor `{name}`: no parameter of the module has this name")]
    UnexpectedTensor {
        /// The tensor's name in the checkpoint.
        name: String,
    },
    /// A checkpoint tensor's shape differs from the shape of the parameter it should fill.
    #[error(
        "tensor `{name}`: shape {found:?} in the checkpoint, but the parameter has shape {expected:?}"
    )]
    TensorShape {
        /// The tensor's name in the checkpoint.
        name: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The checkpoint tensor's shape.
        found: Vec<usize>,
    },
    /// A checkpoint tensor has an element type that cannot become f32 (an integer, bool or 8-bit
    /// float type); F32, F16, BF16 and F64 are accepted.
    #[error(
        "tensor `{name}`: dtype {dtype} cannot be loaded as f32 (accepted: F32, F16, BF16, F64)"
    )]
    TensorDtype {
        /// The tensor's name in the checkpoint.
        name: String,
        /// The element type found, as the safetensors header spells it (`I64`, `BOOL`...).
        dtype: String,
    },
}

impl Error {
    /// A [`Error::Shape`] for `op`.
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }

    /// An [`Error::InvalidArgument`] for `op`.
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }

    /// An [`Error::Empty`] for `op`.
    pub fn empty(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Empty {
            op,
            msg: msg.into(),
        }
    }
}

/// `std::result::Result` with [`enum@Error`].
pub type Result<T> = std::result::Result<T, Error>;
