//! Seeded shuffling over sample indices: one fresh permutation per epoch, cut into batches.

use crate::error::{Error, Result};
use crate::tensor::Rng;

/// Yields the indices `0..len` in a new random order each epoch, `batch` at a time.
///
/// Deterministic given the seed: epoch `e` of two batchers built with the same arguments is the
/// same. The last, partial batch of an epoch is kept by default; [`Batcher::drop_last`] drops
/// it (so that every batch has exactly `batch` indices).
///
/// ```
/// use lithe::data::Batcher;
/// let mut b = Batcher::new(10, 4, 7)?;
/// let sizes: Vec<usize> = b.next_epoch().map(|ix| ix.len()).collect();
/// assert_eq!(sizes, [4, 4, 2]);
/// # Ok::<(), lithe::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Batcher {
    batch: usize,
    drop_last: bool,
    rng: Rng,
    perm: Vec<usize>,
    epochs: usize,
}

impl Batcher {
    /// A batcher over `len` samples in batches of `batch` (`> 0`, else
    /// [`Error::InvalidArgument`]), shuffled by a generator seeded with `seed`.
    pub fn new(len: usize, batch: usize, seed: u64) -> Result<Self> {
        if batch == 0 {
            return Err(Error::invalid("Batcher::new", "batch size must be > 0"));
        }
        Ok(Batcher {
            batch,
            drop_last: false,
            rng: Rng::new(seed),
            perm: (0..len).collect(),
            epochs: 0,
        })
    }

    /// Whether to drop each epoch's last batch when it is shorter than `batch`.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.perm.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.perm.is_empty()
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Batches in each epoch.
    pub fn batches_per_epoch(&self) -> usize {
        if self.drop_last {
            self.len() / self.batch
        } else {
            self.len().div_ceil(self.batch)
        }
    }

    /// Epochs started so far.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// Starts a new epoch: draws a fresh permutation of `0..len` and returns its batches, in
    /// order. Allocates nothing.
    pub fn next_epoch(&mut self) -> std::slice::Chunks<'_, usize> {
        // Restart from the identity, so an epoch's order depends only on the seed and the epoch
        // number, not on what the caller did with the previous one.
        for (i, p) in self.perm.iter_mut().enumerate() {
            *p = i;
        }
        self.rng.shuffle(&mut self.perm);
        self.epochs += 1;
        let used = if self.drop_last {
            self.len() / self.batch * self.batch
        } else {
            self.len()
        };
        self.perm[..used].chunks(self.batch)
    }
}
