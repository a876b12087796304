//! Int8 packing: copy weights (once, at load) and activations (per call) into the panel order a
//! micro-kernel reads.
//!
//! Every path uses one layout family, parameterized by the panel height `R` (MR rows of A or NR
//! columns of B), the group depth `KG` and the element format:
//!
//! ```text
//! element (r, p) of a panel lives at element offset (p / KG) * R * KG + r * KG + p % KG
//! ```
//!
//! i.e. the depth is cut into groups of `KG` consecutive values, and within a group the `R`
//! rows (or columns) each store their `KG` values side by side. With `KG = 4` bytes, one 32-bit
//! lane holds one column's four values: exactly what `vpdpbusd` and `sdot` consume. The depth is
//! zero-padded up to a multiple of `KG` (`kp`), which adds nothing to any sum.

use super::I8Kernels;
use crate::{I8Isa, KernelError};

/// How a packed value is stored.
pub trait ElemFormat {
    /// Bytes per packed value.
    const BYTES: usize;
    /// For one-byte formats: the mask XORed onto the value's bits (`None` for wider formats).
    const BYTE_XOR: Option<u8>;
    /// Writes `v` at the start of `dst`.
    fn put(dst: &mut [u8], v: i8);
}

/// The signed byte itself.
pub struct S8;
/// `v + 128` as an unsigned byte (the VNNI `vpdpbusd` u8 operand).
pub struct U8Biased;
/// `v` sign-extended to a little-endian i16 (the AVX2 `vpmaddwd` operand).
pub struct I16;

impl ElemFormat for S8 {
    const BYTES: usize = 1;
    const BYTE_XOR: Option<u8> = Some(0);
    #[inline(always)]
    fn put(dst: &mut [u8], v: i8) {
        dst[0] = v as u8;
    }
}

impl ElemFormat for U8Biased {
    const BYTES: usize = 1;
    const BYTE_XOR: Option<u8> = Some(0x80);
    #[inline(always)]
    fn put(dst: &mut [u8], v: i8) {
        dst[0] = (v as u8) ^ 0x80;
    }
}

impl ElemFormat for I16 {
    const BYTES: usize = 2;
    const BYTE_XOR: Option<u8> = None;
    #[inline(always)]
    fn put(dst: &mut [u8], v: i8) {
        dst[..2].copy_from_slice(&(v as i16).to_le_bytes());
    }
}

/// 64-byte aligned, zero-initialised bytes: packed panels start on a cache line so full-width
/// vector loads never split one.
#[derive(Clone, Default)]
pub struct AlignedBytes {
    lines: Vec<CacheLine>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CacheLine([u8; 64]);

impl AlignedBytes {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> AlignedBytes {
        AlignedBytes {
            lines: vec![CacheLine([0; 64]); len.div_ceil(64)],
            len,
        }
    }

    /// Makes the buffer `len` bytes long, reusing its memory (grows once, never shrinks its
    /// allocation). Contents are unspecified afterwards.
    pub fn set_len(&mut self, len: usize) {
        let lines = len.div_ceil(64);
        if self.lines.len() < lines {
            self.lines.resize(lines, CacheLine([0; 64]));
        }
        self.len = len;
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `CacheLine` is `repr(C)` around `[u8; 64]` with no padding, and `lines` holds
        // at least `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// Packs an `mb x k` row-major block of A (row `i` at `a[i * lda..]`) into `ceil(mb / MR)`
/// micro-panels of `MR x kp` values in format `F`. Rows past `mb` and depth past `k` are packed
/// as zeros (in the format's encoding).
pub fn pack_a<const MR: usize, const KG: usize, F: ElemFormat>(
    a: &[i8],
    lda: usize,
    mb: usize,
    k: usize,
    dst: &mut [u8],
) {
    let kp = k.div_ceil(KG) * KG;
    let panel_bytes = MR * kp * F::BYTES;
    for (q, panel) in dst
        .chunks_exact_mut(panel_bytes.max(1))
        .take(mb.div_ceil(MR))
        .enumerate()
    {
        for r in 0..MR {
            let i = q * MR + r;
            let row = if i < mb {
                &a[i * lda..i * lda + k]
            } else {
                &[][..]
            };
            pack_line::<MR, KG, F>(row, kp, r, panel);
        }
    }
}

/// Packs `mb` rows of A one after the other, each zero-padded to `kp` values (row `i` starts at
/// byte `i * kp * F::BYTES`): the layout of the skinny (small-M) kernels, which read every A
/// row's depth groups in order.
pub fn pack_rows<const KG: usize, F: ElemFormat>(
    a: &[i8],
    lda: usize,
    mb: usize,
    k: usize,
    dst: &mut [u8],
) {
    pack_rows_padded::<KG, KG, F>(a, lda, mb, k, dst)
}

/// [`pack_rows`] with the depth padded to a multiple of `KPAD` (a multiple of `KG`).
pub fn pack_rows_padded<const KG: usize, const KPAD: usize, F: ElemFormat>(
    a: &[i8],
    lda: usize,
    mb: usize,
    k: usize,
    dst: &mut [u8],
) {
    let kp = k.div_ceil(KPAD) * KPAD;
    for i in 0..mb {
        let out = &mut dst[i * kp * F::BYTES..(i + 1) * kp * F::BYTES];
        // A panel of height 1 is exactly a padded row.
        pack_line::<1, KG, F>(&a[i * lda..i * lda + k], kp, 0, out);
    }
}

/// Packs one row of A (or one column of B) as line `r` of a panel of height `R`: value `p` goes
/// to element `(p / KG) * R * KG + r * KG + p % KG`; `p` in `row.len()..kp` gets zeros.
#[inline(always)]
fn pack_line<const R: usize, const KG: usize, F: ElemFormat>(
    row: &[i8],
    kp: usize,
    r: usize,
    panel: &mut [u8],
) {
    let group_stride = R * KG * F::BYTES;
    let mut groups = row.chunks_exact(KG);
    let mut at = r * KG * F::BYTES;
    if let Some(xor) = F::BYTE_XOR {
        // One-byte formats: whole groups at once (a 4-byte group is one u32 copy).
        let mask = [xor; KG];
        for g in groups.by_ref() {
            let out = &mut panel[at..at + KG];
            for ((o, &v), &x) in out.iter_mut().zip(g).zip(&mask) {
                *o = v as u8 ^ x;
            }
            at += group_stride;
        }
    }
    for g in groups.by_ref() {
        let out = &mut panel[at..at + KG * F::BYTES];
        for (t, &v) in g.iter().enumerate() {
            F::put(&mut out[t * F::BYTES..], v);
        }
        at += group_stride;
    }
    let tail = groups.remainder();
    let full = row.len() / KG * KG;
    for p in (full..kp).step_by(KG) {
        let out = &mut panel[at..at + KG * F::BYTES];
        for t in 0..KG {
            let v = if p == full {
                tail.get(t).copied().unwrap_or(0)
            } else {
                0
            };
            F::put(&mut out[t * F::BYTES..], v);
        }
        at += group_stride;
    }
}

/// Packs all of B (`n` rows of `k` weights, row `j` at `b[j * ldb..]`) into `ceil(n / NR)`
/// panels of `NR x kp` values in format `F`; columns past `n` are zeros.
pub fn pack_b<const NR: usize, const KG: usize, F: ElemFormat>(
    b: &[i8],
    ldb: usize,
    n: usize,
    k: usize,
    dst: &mut [u8],
) {
    pack_b_padded::<NR, KG, KG, F>(b, ldb, n, k, dst)
}

/// [`pack_b`] with the depth padded to a multiple of `KPAD` (a multiple of `KG`): AMX tiles
/// consume 64 depth values at a time but want B in groups of 4.
pub fn pack_b_padded<const NR: usize, const KG: usize, const KPAD: usize, F: ElemFormat>(
    b: &[i8],
    ldb: usize,
    n: usize,
    k: usize,
    dst: &mut [u8],
) {
    let kp = k.div_ceil(KPAD) * KPAD;
    let panel_bytes = NR * kp * F::BYTES;
    for (q, panel) in dst
        .chunks_exact_mut(panel_bytes.max(1))
        .take(n.div_ceil(NR))
        .enumerate()
    {
        for r in 0..NR {
            let j = q * NR + r;
            let col = if j < n {
                &b[j * ldb..j * ldb + k]
            } else {
                &[][..]
            };
            pack_line::<NR, KG, F>(col, kp, r, panel);
        }
    }
}

/// Weights `B` (N x K, row-major: one row per output column), packed once for one int8 path.
///
/// Holds the panels in the layout that path's micro-kernel reads, plus each output column's
/// initial sum: `-128 * sum_k B[n, k]` where a kernel computes with `A + 128` as unsigned bytes
/// (AVX-VNNI, the AMX skinny kernel), 0 elsewhere (AVX512-VNNI stores `B + 128` instead and
/// corrects each row of A per call).
#[derive(Clone)]
pub struct PackedI8B {
    isa: I8Isa,
    layout: Layout,
    n: usize,
    k: usize,
    data: AlignedBytes,
    col_init: Vec<i32>,
    skinny_col_init: Vec<i32>,
}

impl PackedI8B {
    /// Packs `b` (`n` rows of `k` values, row `j` at `b[j * k..]`) for the int8 path `isa`.
    ///
    /// Errors: `b.len() != n * k`; a value of -128 ([`KernelError::I8OutOfRange`]); `isa` not
    /// supported by this CPU.
    pub fn pack(b: &[i8], n: usize, k: usize, isa: I8Isa) -> Result<PackedI8B, KernelError> {
        Self::pack_for(b, n, k, &I8Kernels::for_isa(isa)?)
    }

    /// [`PackedI8B::pack`] for an explicit kernel table (e.g. portable kernels with an odd
    /// tile); such weights can only be used with the same table
    /// ([`crate::gemm_i8::I8GemmOptions::kernels`]).
    pub fn pack_for(
        b: &[i8],
        n: usize,
        k: usize,
        ks: &I8Kernels,
    ) -> Result<PackedI8B, KernelError> {
        let isa = ks.isa;
        let len = n
            .checked_mul(k)
            .ok_or_else(|| KernelError::ShapeMismatch(format!("B of {n} x {k} overflows usize")))?;
        if b.len() != len {
            return Err(KernelError::LengthMismatch(format!(
                "B has {} values, expected n * k = {n} * {k} = {len}",
                b.len()
            )));
        }
        if let Some(index) = b.iter().position(|&v| v == i8::MIN) {
            return Err(KernelError::I8OutOfRange { what: "B", index });
        }
        let panels = n.div_ceil(ks.nr);
        let mut data = AlignedBytes::zeroed(panels * ks.b_panel_bytes(k));
        (ks.pack_b)(b, k, n, k, data.as_mut_slice());
        let col_sums: Vec<i32> = (0..panels * ks.nr)
            .map(|j| match b.get(j * k..(j + 1) * k) {
                Some(row) if j < n => row.iter().map(|&v| v as i32).sum(),
                _ => 0,
            })
            .collect();
        let scaled = |factor: i32| col_sums.iter().map(|&s| factor * s).collect::<Vec<_>>();
        let col_init = scaled(ks.colsum_factor);
        let skinny_col_init = match ks.skinny {
            Some(sk) if sk.colsum_factor != ks.colsum_factor => scaled(sk.colsum_factor),
            _ => Vec::new(),
        };
        Ok(PackedI8B {
            isa,
            layout: Layout::of(ks),
            n,
            k,
            data,
            col_init,
            skinny_col_init,
        })
    }

    /// The path these weights were packed for.
    pub fn isa(&self) -> I8Isa {
        self.isa
    }

    /// Output columns (rows of the unpacked B).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Depth (columns of the unpacked B).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes of packed storage (panels plus per-column sums).
    pub fn packed_bytes(&self) -> usize {
        self.data.as_slice().len() + 4 * self.col_init.len()
    }

    /// Whether these panels are laid out for the kernel table `ks`.
    pub(crate) fn fits(&self, ks: &I8Kernels) -> bool {
        self.isa == ks.isa && self.layout == Layout::of(ks)
    }

    pub(crate) fn data(&self) -> &[u8] {
        self.data.as_slice()
    }

    pub(crate) fn col_init(&self) -> &[i32] {
        &self.col_init
    }

    /// The initial column sums of the kernel table's skinny kernel.
    pub(crate) fn skinny_col_init(&self) -> &[i32] {
        if self.skinny_col_init.is_empty() {
            &self.col_init
        } else {
            &self.skinny_col_init
        }
    }
}

/// What a kernel table assumes about packed B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    nr: usize,
    kg: usize,
    b_bytes: usize,
    colsum_factor: i32,
    skinny_colsum_factor: Option<i32>,
}

impl Layout {
    fn of(ks: &I8Kernels) -> Layout {
        Layout {
            nr: ks.nr,
            kg: ks.kg,
            b_bytes: ks.b_bytes,
            colsum_factor: ks.colsum_factor,
            skinny_colsum_factor: ks.skinny.map(|s| s.colsum_factor),
        }
    }
}

impl std::fmt::Debug for PackedI8B {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedI8B")
            .field("isa", &self.isa)
            .field("n", &self.n)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_b_layout_and_padding() {
        // n = 3 columns of k = 5, NR = 2, KG = 4: 2 panels of 2 x 8.
        let b: Vec<i8> = (0..15).map(|v| v as i8 + 1).collect();
        let mut dst = vec![0xAAu8; 2 * 2 * 8];
        pack_b::<2, 4, S8>(&b, 5, 3, 5, &mut dst);
        let v = |x: &[u8]| x.iter().map(|&b| b as i8).collect::<Vec<_>>();
        // panel 0, group 0: col 0 values 1..4, col 1 values 6..9
        assert_eq!(v(&dst[0..8]), [1, 2, 3, 4, 6, 7, 8, 9]);
        // panel 0, group 1: col 0 value 5 then zeros, col 1 value 10 then zeros
        assert_eq!(v(&dst[8..16]), [5, 0, 0, 0, 10, 0, 0, 0]);
        // panel 1: col 2, then the padding column of zeros
        assert_eq!(v(&dst[16..24]), [11, 12, 13, 14, 0, 0, 0, 0]);
        assert_eq!(v(&dst[24..32]), [15, 0, 0, 0, 0, 0, 0, 0]);
        let mut wide = vec![0u8; 2 * 2 * 2 * 3];
        pack_a::<2, 2, I16>(&b[..5], 5, 1, 5, &mut wide);
        assert_eq!(&wide[..8], &[1, 0, 2, 0, 0, 0, 0, 0]);
        let mut biased = vec![0u8; 4];
        pack_rows::<4, U8Biased>(&[-1, 0, 127], 3, 1, 3, &mut biased);
        assert_eq!(biased, [127, 128, 255, 128]);
    }
}
