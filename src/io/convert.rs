//! Element conversions from the little-endian bytes of a safetensors tensor to f32.

use safetensors::Dtype;

/// The f32 value of an IEEE 754 binary16 bit pattern (exact: every f16 is an f32). Infinities
/// stay infinite, NaNs stay NaN (payload kept in the high mantissa bits), subnormals are
/// normalised.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: man * 2^-24. Shift the leading one up to the implicit-bit position;
            // 113 is the biased f32 exponent of 2^-14.
            let mut e = 113u32;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// The f32 value of a bfloat16 bit pattern (exact: bf16 is the top half of an f32).
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Decodes `bytes` (little-endian elements of `dtype`) into f32, or `None` when `dtype` is not
/// a float type lithe converts (F32, F16, BF16, F64). The caller has checked that the byte
/// count matches the shape (safetensors validates it when parsing the header).
pub(crate) fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        // Narrowing: rounds to nearest, as `torch.Tensor.float()` does.
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        _ => return None,
    })
}

/// Whether [`to_f32`] accepts `dtype`.
pub(crate) fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of an f16 bit pattern from its definition, in f64.
    fn f16_reference(h: u16) -> f64 {
        let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
        let exp = i32::from((h >> 10) & 0x1f);
        let man = f64::from(h & 0x3ff);
        match exp {
            0 => sign * man * 2f64.powi(-24),
            31 if man == 0.0 => sign * f64::INFINITY,
            31 => f64::NAN,
            _ => sign * (1.0 + man / 1024.0) * 2f64.powi(exp - 15),
        }
    }

    #[test]
    fn every_f16_bit_pattern_converts_exactly() {
        for h in 0..=u16::MAX {
            let got = f16_to_f32(h);
            let want = f16_reference(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(f64::from(got), want, "{h:#06x}");
                assert_eq!(got.is_sign_negative(), h >> 15 == 1, "{h:#06x} sign");
            }
        }
    }

    #[test]
    fn bf16_is_the_top_half_of_f32() {
        for v in [0.0f32, -0.0, 1.0, -2.5, 3.140625, f32::INFINITY, 1e-40] {
            let h = (v.to_bits() >> 16) as u16;
            assert_eq!(bf16_to_f32(h).to_bits(), v.to_bits() & 0xffff_0000);
        }
        assert!(bf16_to_f32(0x7fc0).is_nan());
    }

    #[test]
    fn non_float_dtypes_are_refused() {
        assert!(to_f32(Dtype::I64, &[0; 8]).is_none());
        assert!(to_f32(Dtype::BOOL, &[0; 1]).is_none());
        assert!(!is_float(Dtype::I8));
        assert_eq!(to_f32(Dtype::F64, &1.5f64.to_le_bytes()), Some(vec![1.5]));
    }
}
