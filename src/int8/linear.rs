//! One quantized Linear: int8 weights per output row, packed once, f32 bias.

use super::ActQuant;
use crate::error::{Error, Result};

/// A Linear lowered to int8: `y = s_x * s_w[n] * sum_k qx[k] qw[n,k] + b[n]`.
pub struct Int8Linear {
    pub(crate) in_features: usize,
    pub(crate) out_features: usize,
    pub(crate) act: ActQuant,
}

impl Int8Linear {
    /// Quantizes `lin`'s weight per output row and packs it; its input will be quantized as
    /// `act` says.
    pub fn from_linear(lin: &crate::nn::Linear, act: ActQuant) -> Result<Self> {
        let _ = (lin, act);
        Err(Error::invalid(
            "Int8Linear::from_linear",
            "not yet implemented",
        ))
    }

    /// Width of the input.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Width of the output.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// How the input is quantized.
    pub fn act(&self) -> ActQuant {
        self.act
    }
}
