//! Unstructured magnitude pruning (Zhu & Gupta, "To prune, or not to prune"): the weights of
//! smallest magnitude are set to zero, per layer or over all layers at once, and kept at zero
//! by masks applied to the weights after every optimizer step and to their gradients before
//! it. The sparsity rises along a cubic schedule while training goes on, so the network adapts
//! to each cut before the next. The model stays dense (zeros are stored), so it saves, loads
//! and runs like any other; [`MagnitudePruner::sparsity`] reports what fraction is zero.

use crate::autograd::Param;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::Tensor;

/// Which weights compete for survival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneScope {
    /// Every matrix loses the same fraction of its weights.
    PerLayer,
    /// One magnitude threshold over all matrices: layers with many small weights lose more.
    Global,
}

/// The gradual schedule `s(t) = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3` for
/// `t0 <= t <= t1`, `s_i` before and `s_f` after, pruning every `every` steps from `t0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CubicSchedule {
    /// Sparsity `s_i` at the first pruning step, in `[0, 1)`.
    pub initial: f32,
    /// Final sparsity `s_f`, in `[initial, 1)`.
    pub target: f32,
    /// First pruning step `t0`.
    pub start: usize,
    /// Step `t1` at which the target is reached (`> start`, or `== start` for one-shot).
    pub end: usize,
    /// Steps between pruning events (> 0).
    pub every: usize,
}

impl CubicSchedule {
    /// [`Error::InvalidArgument`] unless `0 <= initial <= target < 1`, `start <= end` and
    /// `every > 0`.
    pub fn validate(&self) -> Result<()> {
        let ok = (0.0..1.0).contains(&self.initial)
            && (self.initial..1.0).contains(&self.target)
            && self.start <= self.end
            && self.every > 0;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid("CubicSchedule", format!("{self:?}")))
        }
    }

    /// The sparsity wanted at step `t`.
    pub fn sparsity_at(&self, t: usize) -> f32 {
        if t < self.start {
            return self.initial;
        }
        if t >= self.end {
            return self.target;
        }
        let progress = (t - self.start) as f32 / (self.end - self.start) as f32;
        self.target + (self.initial - self.target) * (1.0 - progress).powi(3)
    }

    /// Whether masks are recomputed at step `t`: every `every` steps from `start`, and at `end`.
    pub fn prunes_at(&self, t: usize) -> bool {
        (t >= self.start && t <= self.end && (t - self.start).is_multiple_of(self.every))
            || t == self.end
    }
}

/// The masks of a set of weight matrices and the rule that recomputes them.
#[derive(Clone, Debug)]
pub struct MagnitudePruner {
    targets: Vec<(String, Param)>,
    masks: Vec<Vec<bool>>,
    scope: PruneScope,
}

impl MagnitudePruner {
    /// A pruner over `targets` (named weights), all kept for now.
    pub fn new(targets: Vec<(String, Param)>, scope: PruneScope) -> Result<Self> {
        if targets.is_empty() {
            return Err(Error::invalid("MagnitudePruner", "no weights to prune"));
        }
        let masks = targets.iter().map(|(_, p)| vec![true; p.numel()]).collect();
        Ok(MagnitudePruner {
            targets,
            masks,
            scope,
        })
    }

    /// A pruner over the weight matrix of every Linear in the encoder of `model` (names under
    /// `encoder.`); embeddings, heads, biases and norms stay dense, as in the usual practice.
    pub fn encoder_weights(model: &impl Module, scope: PruneScope) -> Result<Self> {
        let mut targets = Vec::new();
        model.visit_linears(&mut |name, lin| {
            if name.starts_with("encoder.") {
                targets.push((format!("{name}.weight"), lin.weight.clone()));
            }
        });
        Self::new(targets, scope)
    }

    /// The pruned weights, by name.
    pub fn targets(&self) -> &[(String, Param)] {
        &self.targets
    }

    /// Recomputes the masks so that a fraction `sparsity` of the weights (of each matrix, or
    /// of all together) is zero: the smallest magnitudes go, ties to the lower index. Then
    /// zeroes them ([`MagnitudePruner::apply`]). Weights already pruned have magnitude 0 and so
    /// stay pruned as the sparsity rises. [`Error::InvalidArgument`] for a sparsity outside
    /// `[0, 1)`, [`Error::NonFinite`] (nothing changed) if a weight is NaN or infinite.
    pub fn prune_to(&mut self, sparsity: f32) -> Result<()> {
        if !(0.0..1.0).contains(&sparsity) {
            return Err(Error::invalid(
                "MagnitudePruner::prune_to",
                format!("sparsity {sparsity} not in [0, 1)"),
            ));
        }
        let values: Vec<Tensor> = self.targets.iter().map(|(_, p)| p.value()).collect();
        // NaN has no magnitude to rank: refuse rather than keep it by accident of the sort.
        for ((name, _), v) in self.targets.iter().zip(&values) {
            if v.data().iter().any(|w| !w.is_finite()) {
                return Err(Error::NonFinite {
                    op: "MagnitudePruner::prune_to",
                    msg: format!("`{name}` holds a non-finite weight"),
                });
            }
        }
        let groups: Vec<Vec<usize>> = match self.scope {
            PruneScope::PerLayer => (0..values.len()).map(|i| vec![i]).collect(),
            PruneScope::Global => vec![(0..values.len()).collect()],
        };
        for group in groups {
            // (|w|, matrix, index) of every weight of the group, smallest first.
            let mut all: Vec<(f32, usize, usize)> = group
                .iter()
                .flat_map(|&m| {
                    values[m]
                        .data()
                        .iter()
                        .enumerate()
                        .map(move |(i, w)| (w.abs(), m, i))
                })
                .collect();
            let cut = (all.len() as f64 * f64::from(sparsity)).round() as usize;
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            for &m in &group {
                self.masks[m].iter_mut().for_each(|k| *k = true);
            }
            for &(_, m, i) in &all[..cut] {
                self.masks[m][i] = false;
            }
        }
        self.apply();
        Ok(())
    }

    /// Sets every masked weight to 0 (after each optimizer step, so no update revives one).
    pub fn apply(&self) {
        for ((_, p), mask) in self.targets.iter().zip(&self.masks) {
            p.update(|w, _| {
                for (x, &keep) in w.data_mut().iter_mut().zip(mask) {
                    if !keep {
                        *x = 0.0;
                    }
                }
            });
        }
    }

    /// Sets the gradient of every masked weight to 0 (before each optimizer step, so the
    /// optimizer's moments never see it).
    pub fn mask_grads(&self) -> Result<()> {
        for ((_, p), mask) in self.targets.iter().zip(&self.masks) {
            if let Some(mut g) = p.grad() {
                for (x, &keep) in g.data_mut().iter_mut().zip(mask) {
                    if !keep {
                        *x = 0.0;
                    }
                }
                p.zero_grad();
                p.accumulate_grad(g)?;
            }
        }
        Ok(())
    }

    /// Fraction of the pruned weights that are zero now (masked, or zero by chance).
    pub fn sparsity(&self) -> f64 {
        let (zeros, total) = self
            .targets
            .iter()
            .fold((0usize, 0usize), |(z, t), (_, p)| {
                let v = p.value();
                let zeros = v.data().iter().filter(|x| **x == 0.0).count();
                (z + zeros, t + v.numel())
            });
        zeros as f64 / total.max(1) as f64
    }

    /// Per weight matrix, `(name, fraction zero)`.
    pub fn layer_sparsity(&self) -> Vec<(String, f64)> {
        self.targets
            .iter()
            .map(|(name, p)| {
                let v = p.value();
                let zeros = v.data().iter().filter(|x| **x == 0.0).count();
                (name.clone(), zeros as f64 / v.numel().max(1) as f64)
            })
            .collect()
    }
}

/// A [`MagnitudePruner`] driven by a [`CubicSchedule`] over training steps: the hook
/// [`crate::train::train_vit_pruned`] calls around every optimizer step.
#[derive(Clone, Debug)]
pub struct GradualPruning {
    /// The masks.
    pub pruner: MagnitudePruner,
    /// When and how much.
    pub schedule: CubicSchedule,
}

impl GradualPruning {
    /// After the backward of step `t`: prune further if the schedule says so, then clear the
    /// gradients of pruned weights.
    pub fn before_step(&mut self, t: usize) -> Result<()> {
        if self.schedule.prunes_at(t) {
            self.pruner.prune_to(self.schedule.sparsity_at(t))?;
        }
        self.pruner.mask_grads()
    }

    /// After the optimizer step: pruned weights back to exactly 0.
    pub fn after_step(&mut self) {
        self.pruner.apply();
    }
}
