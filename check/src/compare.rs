//! Comparing one result with its reference: [`Compare`] for floats, [`Exact`] for anything
//! that must match bit for bit. A failure names the worst element, its index and both values.

use std::fmt;

use crate::measure::{Measures, ulp_distance};
use crate::tolerance::Tolerance;

/// An element a failed comparison points at.
#[derive(Clone, Debug, PartialEq)]
pub struct Worst {
    /// Flat (row-major) index.
    pub index: usize,
    /// The index split along the shape, when one was given.
    pub coords: Option<Vec<usize>>,
    /// The fast value, formatted.
    pub fast: String,
    /// The reference value, formatted.
    pub reference: String,
    /// Further detail (absolute and relative error, ULPs) for floats.
    pub detail: String,
}

impl fmt::Display for Worst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.coords {
            Some(c) => write!(f, "at {c:?} (flat index {})", self.index)?,
            None => write!(f, "at index {}", self.index)?,
        }
        write!(f, ": fast {}, reference {}", self.fast, self.reference)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Why a comparison failed: every broken bound, the element each points at, and the measures.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// The caller's description of what was compared (may be empty).
    pub context: String,
    /// Number of elements of each side.
    pub lens: (usize, usize),
    /// The shape, when one was given.
    pub shape: Option<Vec<usize>>,
    /// One line per broken bound, with the element it names.
    pub failures: Vec<(String, Option<Worst>)>,
    /// The measures of the whole comparison (None for [`Exact`] and length mismatches).
    pub measures: Option<Box<Measures>>,
}

impl Mismatch {
    /// The element the first broken bound points at: the worst one.
    pub fn worst(&self) -> Option<&Worst> {
        self.failures.iter().find_map(|(_, w)| w.as_ref())
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        write!(f, "fast result differs from the reference")?;
        match &self.shape {
            Some(s) => writeln!(f, " (shape {s:?})")?,
            None => writeln!(f, " ({} elements)", self.lens.0)?,
        }
        for (what, worst) in &self.failures {
            write!(f, "  {what}")?;
            if let Some(w) = worst {
                write!(f, "; worst element {w}")?;
            }
            writeln!(f)?;
        }
        if let Some(m) = &self.measures {
            write!(
                f,
                "  measures: max abs {:.3e}, max rel {:.3e}, rel Frobenius {:.3e}, max ULPs {}, \
                 cosine {:.6}",
                m.max_abs, m.max_rel, m.rel_frobenius, m.max_ulps, m.cosine
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Mismatch {}

/// Splits a flat row-major index along `shape`.
fn coords(index: usize, shape: &[usize]) -> Vec<usize> {
    let mut rest = index;
    let mut c = vec![0; shape.len()];
    for (slot, &d) in c.iter_mut().zip(shape).rev() {
        let d = d.max(1);
        *slot = rest % d;
        rest /= d;
    }
    c
}

fn length_mismatch(context: &str, fast: usize, reference: usize) -> Mismatch {
    Mismatch {
        context: context.to_owned(),
        lens: (fast, reference),
        shape: None,
        failures: vec![(
            format!("length: fast has {fast} elements, reference {reference}"),
            None,
        )],
        measures: None,
    }
}

/// A comparison of `fast` against `reference`, configured with builder methods and run by
/// [`Compare::check`] (a `Result`) or [`Compare::assert`] (panics with the report).
///
/// ```
/// use lithe_check::{Compare, Tolerance};
/// let reference = [1.0f32, 2.0, 3.0, 4.0];
/// let fast = [1.0f32, 2.0, 3.5, 4.0];
/// let err = Compare::new(&fast, &reference)
///     .shape(&[2, 2])
///     .context("2x2 matmul")
///     .check(&Tolerance::abs(0.1))
///     .unwrap_err();
/// let worst = err.worst().unwrap();
/// assert_eq!((worst.index, worst.coords.clone()), (2, Some(vec![1, 0])));
/// assert!(err.to_string().contains("worst element at [1, 0] (flat index 2): fast 3.5"));
/// ```
#[derive(Clone, Debug)]
pub struct Compare<'a> {
    fast: &'a [f32],
    reference: &'a [f32],
    shape: Option<&'a [usize]>,
    scale: Option<&'a [f32]>,
    context: String,
}

impl<'a> Compare<'a> {
    /// Compares `fast` with `reference`, element by element.
    pub fn new(fast: &'a [f32], reference: &'a [f32]) -> Self {
        Compare {
            fast,
            reference,
            shape: None,
            scale: None,
            context: String::new(),
        }
    }

    /// The row-major shape of both, so failures print multi-dimensional indices.
    pub fn shape(mut self, shape: &'a [usize]) -> Self {
        self.shape = Some(shape);
        self
    }

    /// The magnitude of the terms each result sums (e.g. `|A| |B|` for a GEMM), for results
    /// that cancel to near zero: the Frobenius error is taken relative to `||scale||_F` instead
    /// of `||reference||_F`, and `allclose` allows `rtol * (|reference| + |scale|)` per element.
    /// Must have as many elements as the reference.
    pub fn scale(mut self, scale: &'a [f32]) -> Self {
        self.scale = Some(scale);
        self
    }

    /// What is being compared, printed first in a failure (kernel, shape, seed...).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.context = context.to_string();
        self
    }

    /// Every measure, whatever the tolerance.
    pub fn measures(&self, rel_floor: f64) -> Measures {
        Measures::new(self.fast, self.reference, rel_floor, self.scale)
    }

    /// The measures if every bound of `tol` holds, else what broke and where.
    pub fn check(&self, tol: &Tolerance) -> Result<Measures, Mismatch> {
        let (nf, nr) = (self.fast.len(), self.reference.len());
        if nf != nr {
            return Err(length_mismatch(&self.context, nf, nr));
        }
        if let Some(shape) = self.shape
            && shape.iter().product::<usize>() != nf
        {
            let mut m = length_mismatch(&self.context, nf, nr);
            m.failures = vec![(format!("shape {shape:?} does not hold {nf} elements"), None)];
            return Err(m);
        }
        if let Some(scale) = self.scale
            && scale.len() != nr
        {
            let mut m = length_mismatch(&self.context, nf, nr);
            m.failures = vec![(
                format!("scale has {} elements, reference {nr}", scale.len()),
                None,
            )];
            return Err(m);
        }
        let m = self.measures(tol.rel_floor);
        let violations = tol.violations(&m, self.fast, self.reference, self.scale);
        if violations.is_empty() {
            return Ok(m);
        }
        let failures = violations
            .into_iter()
            .map(|v| (v.what, v.at.map(|i| self.worst(i))))
            .collect();
        Err(Mismatch {
            context: self.context.clone(),
            lens: (nf, nr),
            shape: self.shape.map(<[usize]>::to_vec),
            failures,
            measures: Some(Box::new(m)),
        })
    }

    /// [`Compare::check`], panicking with the report on failure.
    #[track_caller]
    pub fn assert(&self, tol: &Tolerance) -> Measures {
        match self.check(tol) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    fn worst(&self, index: usize) -> Worst {
        let (f, r) = (self.fast[index], self.reference[index]);
        let detail = if f.is_finite() && r.is_finite() {
            let abs = (f as f64 - r as f64).abs();
            format!(
                "abs err {abs:.3e}, rel err {:.3e}, {} ULPs",
                abs / (r as f64).abs().max(f64::MIN_POSITIVE),
                ulp_distance(f, r)
            )
        } else {
            String::new()
        };
        Worst {
            index,
            coords: self.shape.map(|s| coords(index, s)),
            fast: format!("{f:?}"),
            reference: format!("{r:?}"),
            detail,
        }
    }
}

/// [`Compare::check`] without shape or context: `Ok(measures)` or what broke and where.
pub fn check_close(fast: &[f32], reference: &[f32], tol: &Tolerance) -> Result<Measures, Mismatch> {
    Compare::new(fast, reference).check(tol)
}

/// [`Compare::assert`] without shape or context: panics with the worst element and its index.
///
/// ```should_panic
/// // panics: "... worst element at index 1: fast 2.5, reference 2.0 ..."
/// lithe_check::assert_close(&[1.0, 2.5], &[1.0, 2.0], &lithe_check::Tolerance::abs(1e-3));
/// ```
#[track_caller]
pub fn assert_close(fast: &[f32], reference: &[f32], tol: &Tolerance) -> Measures {
    Compare::new(fast, reference).assert(tol)
}

/// Bit-for-bit comparison of integers (or any `PartialEq` values): int8 GEMM accumulators,
/// token ids, shapes. A failure names the first differing element and counts the rest.
///
/// ```
/// use lithe_check::Exact;
/// let err = Exact::new(&[1i32, 2, 3, 4], &[1, 2, 3, 5]).shape(&[2, 2]).check().unwrap_err();
/// assert_eq!(err.worst().unwrap().coords, Some(vec![1, 1]));
/// ```
#[derive(Clone, Debug)]
pub struct Exact<'a, T> {
    fast: &'a [T],
    reference: &'a [T],
    shape: Option<&'a [usize]>,
    context: String,
}

impl<'a, T: PartialEq + fmt::Debug> Exact<'a, T> {
    /// Compares `fast` with `reference` for equality, element by element.
    pub fn new(fast: &'a [T], reference: &'a [T]) -> Self {
        Exact {
            fast,
            reference,
            shape: None,
            context: String::new(),
        }
    }

    /// The row-major shape of both, so failures print multi-dimensional indices.
    pub fn shape(mut self, shape: &'a [usize]) -> Self {
        self.shape = Some(shape);
        self
    }

    /// What is being compared, printed first in a failure.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.context = context.to_string();
        self
    }

    /// Ok when every element is equal, else the first difference and how many there are.
    pub fn check(&self) -> Result<(), Mismatch> {
        let (nf, nr) = (self.fast.len(), self.reference.len());
        if nf != nr {
            return Err(length_mismatch(&self.context, nf, nr));
        }
        let mut differing = self
            .fast
            .iter()
            .zip(self.reference)
            .enumerate()
            .filter(|(_, (f, r))| f != r);
        let Some((first, (f, r))) = differing.next() else {
            return Ok(());
        };
        let count = 1 + differing.count();
        Err(Mismatch {
            context: self.context.clone(),
            lens: (nf, nr),
            shape: self.shape.map(<[usize]>::to_vec),
            failures: vec![(
                format!("{count} element(s) differ; first"),
                Some(Worst {
                    index: first,
                    coords: self.shape.map(|s| coords(first, s)),
                    fast: format!("{f:?}"),
                    reference: format!("{r:?}"),
                    detail: String::new(),
                }),
            )],
            measures: None,
        })
    }

    /// [`Exact::check`], panicking with the report on failure.
    #[track_caller]
    pub fn assert(&self) {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coords_split_row_major() {
        assert_eq!(coords(0, &[2, 3, 4]), vec![0, 0, 0]);
        assert_eq!(coords(23, &[2, 3, 4]), vec![1, 2, 3]);
        assert_eq!(coords(5, &[2, 3]), vec![1, 2]);
    }
}
