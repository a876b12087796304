//! Bounds-checked strided matrix views: how GEMM callers describe layout and transposition.

use crate::KernelError;

/// Offset of the last element of a `rows x cols` view, plus one (0 for an empty view).
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

fn check_bounds(
    what: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<(), KernelError> {
    match extent(rows, cols, rs, cs) {
        Some(needed) if needed <= len => Ok(()),
        needed => Err(KernelError::OutOfBounds {
            what,
            rows,
            cols,
            rs,
            cs,
            needed: needed.unwrap_or(usize::MAX),
            len,
        }),
    }
}

/// A read-only `rows x cols` view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A view with arbitrary strides; fails if it reaches past the end of `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, KernelError> {
        check_bounds("matrix", data.len(), rows, cols, rs, cs)?;
        Ok(MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A dense row-major matrix (`data.len()` must be at least `rows * cols`).
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// A dense column-major matrix.
    pub fn col_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, rows, cols, 1, rows)
    }

    /// The transpose, as a view of the same memory.
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// The same shape and strides over another slice (e.g. a second matrix of the same layout).
    pub fn with_data<'b>(&self, data: &'b [f32]) -> Result<MatRef<'b>, KernelError> {
        MatRef::new(data, self.rows, self.cols, self.rs, self.cs)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row stride in elements.
    pub fn row_stride(&self) -> usize {
        self.rs
    }

    /// Column stride in elements.
    pub fn col_stride(&self) -> usize {
        self.cs
    }

    /// Element (i, j); panics when out of range (for tests and references).
    pub fn at(&self, i: usize, j: usize) -> f32 {
        assert!(i < self.rows && j < self.cols);
        self.data[i * self.rs + j * self.cs]
    }

    /// The `rows x cols` sub-view starting at (i, j). The caller keeps it in range.
    pub(crate) fn sub(&self, i: usize, j: usize, rows: usize, cols: usize) -> MatRef<'a> {
        debug_assert!(i + rows <= self.rows && j + cols <= self.cols);
        let start = if rows == 0 || cols == 0 {
            0
        } else {
            i * self.rs + j * self.cs
        };
        MatRef {
            data: &self.data[start.min(self.data.len())..],
            rows,
            cols,
            ..*self
        }
    }

    /// The underlying slice (starting at element (0, 0)).
    pub(crate) fn data(&self) -> &'a [f32] {
        self.data
    }
}

/// A mutable `rows x cols` view in row-major (`cs == 1`) or column-major (`rs == 1`) layout, so
/// no two elements share memory.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatMut<'a> {
    /// A view with explicit strides: either `cs == 1 && rs >= cols` or `rs == 1 && cs >= rows`.
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, KernelError> {
        let distinct = rows <= 1 && cols <= 1
            || (cs == 1 && (rs >= cols || rows <= 1))
            || (rs == 1 && (cs >= rows || cols <= 1));
        if !distinct {
            return Err(KernelError::InvalidStrides { rows, cols, rs, cs });
        }
        check_bounds("output matrix", data.len(), rows, cols, rs, cs)?;
        Ok(MatMut {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A dense row-major matrix.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// A dense column-major matrix.
    pub fn col_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, rows, cols, 1, rows)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row stride in elements.
    pub fn row_stride(&self) -> usize {
        self.rs
    }

    /// Column stride in elements.
    pub fn col_stride(&self) -> usize {
        self.cs
    }

    /// Raw pointer to element (0, 0); the driver hands disjoint tiles to threads through it.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut f32 {
        self.data.as_mut_ptr()
    }

    /// The underlying slice (starting at element (0, 0)).
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_check_bounds_and_strides() {
        let v = vec![0.0f32; 12];
        assert!(MatRef::row_major(&v, 3, 4).is_ok());
        assert!(matches!(
            MatRef::row_major(&v, 4, 4),
            Err(KernelError::OutOfBounds { .. })
        ));
        assert!(MatRef::row_major(&v[..0], 0, 4).is_ok());
        let t = MatRef::row_major(&v, 3, 4).unwrap().t();
        assert_eq!(
            (t.rows(), t.cols(), t.row_stride(), t.col_stride()),
            (4, 3, 1, 4)
        );
        let mut w = vec![0.0f32; 12];
        assert!(matches!(
            MatMut::new(&mut w, 3, 4, 2, 1),
            Err(KernelError::InvalidStrides { .. })
        ));
        assert!(MatMut::new(&mut w, 3, 4, 1, 3).is_ok());
        assert!(MatRef::new(&v, usize::MAX, 2, usize::MAX, 1).is_err());
    }
}
