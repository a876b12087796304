//! What "close enough" means: a set of bounds, each on one error measure.

use crate::measure::Measures;

/// Bounds on the error measures of [`Measures`]; a comparison passes when every bound that is
/// set holds and no non-finite value disagrees (NaN where the reference has NaN, or the same
/// infinity, agrees).
///
/// Build one from a constructor and add bounds with the `and_*` methods:
///
/// ```
/// use lithe_check::Tolerance;
/// let tol = Tolerance::frobenius(1e-5).and_abs(1e-3);
/// assert_eq!(tol.rel_frobenius, Some(1e-5));
/// assert_eq!(tol.max_abs, Some(1e-3));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tolerance {
    /// Bound on `max |fast - reference|`.
    pub max_abs: Option<f64>,
    /// Bound on `max |fast - reference| / max(|reference|, rel_floor)`.
    pub max_rel: Option<f64>,
    /// The floor of the relative error's denominator (0 unless set by [`Tolerance::rel`]).
    pub rel_floor: f64,
    /// Bound on `||fast - reference||_F / ||reference||_F` (or over a given scale).
    pub rel_frobenius: Option<f64>,
    /// Bound on the largest distance in units in the last place.
    pub max_ulps: Option<u64>,
    /// Lower bound on the cosine similarity.
    pub min_cosine: Option<f64>,
    /// numpy's `allclose`: every element within `atol + rtol * |reference|` (plus
    /// `rtol * |scale|` element-wise when the comparison has a scale, see
    /// [`crate::Compare::scale`]).
    pub allclose: Option<(f64, f64)>,
}

impl Tolerance {
    /// lithe's bound for f32 GEMM against an f64 reference: relative Frobenius error 1e-5.
    pub const F32_GEMM: Tolerance = Tolerance::frobenius(1e-5);
    /// lithe's bound for fp16 paths against an f32 reference: relative Frobenius error 1e-2.
    pub const FP16: Tolerance = Tolerance::frobenius(1e-2);
    /// Bit-for-bit equality (0 ULPs; +0 and -0 count as equal).
    pub const EXACT: Tolerance = Tolerance::ulps(0);

    const NONE: Tolerance = Tolerance {
        max_abs: None,
        max_rel: None,
        rel_floor: 0.0,
        rel_frobenius: None,
        max_ulps: None,
        min_cosine: None,
        allclose: None,
    };

    /// Every element within `bound` of the reference.
    pub const fn abs(bound: f64) -> Self {
        Tolerance {
            max_abs: Some(bound),
            ..Self::NONE
        }
    }

    /// Every element within `bound` relative to `max(|reference|, floor)`.
    pub const fn rel(bound: f64, floor: f64) -> Self {
        Tolerance {
            max_rel: Some(bound),
            rel_floor: floor,
            ..Self::NONE
        }
    }

    /// The whole result within `bound` in relative Frobenius norm.
    pub const fn frobenius(bound: f64) -> Self {
        Tolerance {
            rel_frobenius: Some(bound),
            ..Self::NONE
        }
    }

    /// Every element within `bound` units in the last place.
    pub const fn ulps(bound: u64) -> Self {
        Tolerance {
            max_ulps: Some(bound),
            ..Self::NONE
        }
    }

    /// Cosine similarity at least `min`.
    pub const fn cosine(min: f64) -> Self {
        Tolerance {
            min_cosine: Some(min),
            ..Self::NONE
        }
    }

    /// numpy's `allclose(fast, reference, rtol, atol)`: `|f - r| <= atol + rtol * |r|`.
    pub const fn allclose(atol: f64, rtol: f64) -> Self {
        Tolerance {
            allclose: Some((atol, rtol)),
            ..Self::NONE
        }
    }

    /// Adds a bound on the largest absolute error.
    pub const fn and_abs(mut self, bound: f64) -> Self {
        self.max_abs = Some(bound);
        self
    }

    /// Adds a bound on the largest relative error (denominator floored at `floor`).
    pub const fn and_rel(mut self, bound: f64, floor: f64) -> Self {
        self.max_rel = Some(bound);
        self.rel_floor = floor;
        self
    }

    /// Adds a bound on the relative Frobenius error.
    pub const fn and_frobenius(mut self, bound: f64) -> Self {
        self.rel_frobenius = Some(bound);
        self
    }

    /// Adds a bound on the ULP distance.
    pub const fn and_ulps(mut self, bound: u64) -> Self {
        self.max_ulps = Some(bound);
        self
    }

    /// Adds a lower bound on the cosine similarity.
    pub const fn and_cosine(mut self, min: f64) -> Self {
        self.min_cosine = Some(min);
        self
    }

    /// Why `m` breaks these bounds, one line per broken bound, each with the element it names
    /// (the first non-finite disagreement, or the element where that measure is worst).
    pub(crate) fn violations(
        &self,
        m: &Measures,
        fast: &[f32],
        reference: &[f32],
        scale: Option<&[f32]>,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        if m.nonfinite_mismatches > 0 {
            out.push(Violation {
                what: format!(
                    "{} non-finite value(s) disagree with the reference",
                    m.nonfinite_mismatches
                ),
                at: m.first_nonfinite_mismatch,
            });
        }
        if let Some(b) = self.max_abs.filter(|&b| m.max_abs > b) {
            out.push(Violation {
                what: format!("max abs error {:.3e} > {b:.3e}", m.max_abs),
                at: m.max_abs_at,
            });
        }
        if let Some(b) = self.max_rel.filter(|&b| m.max_rel > b) {
            out.push(Violation {
                what: format!(
                    "max rel error {:.3e} > {b:.3e} (floor {:.1e})",
                    m.max_rel, m.rel_floor
                ),
                at: m.max_rel_at,
            });
        }
        if let Some((atol, rtol)) = self.allclose {
            // The element that exceeds atol + rtol |r| by the largest factor.
            let mut worst: Option<(usize, f64)> = None;
            let mut count = 0usize;
            for (i, (&f, &r)) in fast.iter().zip(reference).enumerate() {
                if !(f.is_finite() && r.is_finite()) {
                    continue;
                }
                let terms = scale.map_or(0.0, |s| (s[i] as f64).abs());
                let allowed = atol + rtol * ((r as f64).abs() + terms);
                let err = (f as f64 - r as f64).abs();
                if err > allowed {
                    count += 1;
                    let ratio = if allowed > 0.0 {
                        err / allowed
                    } else {
                        f64::INFINITY
                    };
                    if worst.is_none_or(|(_, w)| ratio > w) {
                        worst = Some((i, ratio));
                    }
                }
            }
            if let Some((i, ratio)) = worst {
                out.push(Violation {
                    what: format!(
                        "{count} element(s) outside atol {atol:.1e} + rtol {rtol:.1e} * |ref| \
                         (worst by {ratio:.3}x)"
                    ),
                    at: Some(i),
                });
            }
        }
        if let Some(b) = self.max_ulps.filter(|&b| m.max_ulps > b) {
            out.push(Violation {
                what: format!("max ULP distance {} > {b}", m.max_ulps),
                at: m.max_ulps_at,
            });
        }
        if let Some(b) = self.rel_frobenius.filter(|&b| m.rel_frobenius > b) {
            out.push(Violation {
                what: format!("relative Frobenius error {:.3e} > {b:.3e}", m.rel_frobenius),
                at: m.max_abs_at,
            });
        }
        if let Some(b) = self.min_cosine.filter(|&b| m.cosine < b) {
            out.push(Violation {
                what: format!("cosine similarity {:.6} < {b:.6}", m.cosine),
                at: m.max_abs_at,
            });
        }
        out
    }
}

/// One broken bound and the element it points at.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Violation {
    pub(crate) what: String,
    pub(crate) at: Option<usize>,
}
