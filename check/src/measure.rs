//! Error measures between a fast result and its reference, computed in one pass in f64.

/// Distance in units in the last place: how many f32 values lie between `a` and `b`, plus one
/// (0 when they are equal, +0 and -0 included). `u64::MAX` when either is NaN.
///
/// ```
/// use lithe_check::ulp_distance;
/// assert_eq!(ulp_distance(1.0, 1.0), 0);
/// assert_eq!(ulp_distance(1.0, 1.0 + f32::EPSILON), 1);
/// assert_eq!(ulp_distance(-0.0, 0.0), 0);
/// assert_eq!(ulp_distance(-f32::from_bits(1), f32::from_bits(1)), 2);
/// ```
pub fn ulp_distance(a: f32, b: f32) -> u64 {
    if a.is_nan() || b.is_nan() {
        return u64::MAX;
    }
    // Map the sign-magnitude bit patterns onto one ordered integer line (-0 and +0 meet at 0).
    fn ordered(x: f32) -> i64 {
        let bits = x.to_bits();
        let magnitude = (bits & 0x7fff_ffff) as i64;
        if bits >> 31 == 1 {
            -magnitude
        } else {
            magnitude
        }
    }
    ordered(a).abs_diff(ordered(b))
}

/// How two values relate when at least one of them is not finite.
fn nonfinite_agree(fast: f32, reference: f32) -> bool {
    // NaN where the reference has NaN is the right answer; an infinity must match in sign.
    (fast.is_nan() && reference.is_nan()) || fast == reference
}

/// Every error measure of `fast` against `reference`, element by element.
///
/// The finite measures skip positions where either value is NaN or infinite; those are counted
/// in [`Measures::nonfinite_mismatches`] unless both sides agree (NaN and NaN, or the same
/// infinity).
#[derive(Clone, Debug, PartialEq)]
pub struct Measures {
    /// Number of elements compared.
    pub len: usize,
    /// `max |fast - reference|`.
    pub max_abs: f64,
    /// Where `max_abs` is reached (None when nothing finite was compared).
    pub max_abs_at: Option<usize>,
    /// `max |fast - reference| / max(|reference|, rel_floor)`.
    pub max_rel: f64,
    /// Where `max_rel` is reached.
    pub max_rel_at: Option<usize>,
    /// The floor `max_rel` divides by at most (keeps values near zero from dominating).
    pub rel_floor: f64,
    /// `||fast - reference||_F / ||scale||_F`, with `scale` the reference unless another was
    /// given; the absolute `||fast - reference||_F` when that norm is zero.
    pub rel_frobenius: f64,
    /// Largest [`ulp_distance`].
    pub max_ulps: u64,
    /// Where `max_ulps` is reached.
    pub max_ulps_at: Option<usize>,
    /// `<fast, reference> / (||fast|| ||reference||)`; 1 when both are zero, 0 when one is.
    pub cosine: f64,
    /// Positions where one side is not finite and the two disagree.
    pub nonfinite_mismatches: usize,
    /// The first such position.
    pub first_nonfinite_mismatch: Option<usize>,
}

impl Measures {
    /// Measures `fast` against `reference` (equal lengths; extra elements of the longer slice
    /// are ignored), relative errors floored at `rel_floor`, the Frobenius error relative to
    /// `scale` (the reference when None).
    pub fn new(fast: &[f32], reference: &[f32], rel_floor: f64, scale: Option<&[f32]>) -> Self {
        let mut m = Measures {
            len: fast.len().min(reference.len()),
            max_abs: 0.0,
            max_abs_at: None,
            max_rel: 0.0,
            max_rel_at: None,
            rel_floor,
            rel_frobenius: 0.0,
            max_ulps: 0,
            max_ulps_at: None,
            cosine: 1.0,
            nonfinite_mismatches: 0,
            first_nonfinite_mismatch: None,
        };
        let (mut diff2, mut ref2, mut fast2, mut dot) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (i, (&f, &r)) in fast.iter().zip(reference).enumerate() {
            if !(f.is_finite() && r.is_finite()) {
                if !nonfinite_agree(f, r) {
                    m.nonfinite_mismatches += 1;
                    m.first_nonfinite_mismatch.get_or_insert(i);
                }
                continue;
            }
            let (f64_, r64) = (f as f64, r as f64);
            let abs = (f64_ - r64).abs();
            if m.max_abs_at.is_none() || abs > m.max_abs {
                m.max_abs = abs;
                m.max_abs_at = Some(i);
            }
            let rel = abs / r64.abs().max(rel_floor);
            if m.max_rel_at.is_none() || rel > m.max_rel {
                m.max_rel = rel;
                m.max_rel_at = Some(i);
            }
            let ulps = ulp_distance(f, r);
            if m.max_ulps_at.is_none() || ulps > m.max_ulps {
                m.max_ulps = ulps;
                m.max_ulps_at = Some(i);
            }
            diff2 += abs * abs;
            ref2 += r64 * r64;
            fast2 += f64_ * f64_;
            dot += f64_ * r64;
        }
        let denominator = match scale {
            Some(s) => s.iter().map(|&v| (v as f64).powi(2)).sum::<f64>(),
            None => ref2,
        };
        m.rel_frobenius = if denominator > 0.0 {
            (diff2 / denominator).sqrt()
        } else {
            diff2.sqrt()
        };
        m.cosine = match (fast2 > 0.0, ref2 > 0.0) {
            (false, false) => 1.0,
            (true, true) => dot / (fast2.sqrt() * ref2.sqrt()),
            _ => 0.0,
        };
        m
    }
}
