//! Whole-model equivalence: two engines run the same samples, every traced stage (embeddings,
//! each layer, the output) is compared, and the report names the first stage whose error
//! breaks the tolerance and the stage where the error jumps most.

use std::fmt;

use crate::compare::Compare;
use crate::tolerance::Tolerance;

/// One traced stage of a forward pass: its name (the same in every engine, e.g. `layer.3`) and
/// its output values.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// Name shared by the engines being compared.
    pub name: String,
    /// The stage's output, flattened row-major.
    pub values: Vec<f32>,
    /// Its shape, if known: failures then print multi-dimensional indices.
    pub shape: Option<Vec<usize>>,
}

impl Stage {
    /// A stage named `name` holding `values`.
    pub fn new(name: impl Into<String>, values: Vec<f32>) -> Self {
        Stage {
            name: name.into(),
            values,
            shape: None,
        }
    }

    /// The same stage with its shape (ignored unless it holds exactly `values.len()` elements).
    pub fn shaped(mut self, shape: Vec<usize>) -> Self {
        self.shape = Some(shape);
        self
    }
}

/// The error an engine's trace may return.
pub type TraceError = Box<dyn std::error::Error + Send + Sync>;

/// An inference engine that can show its intermediate results for a sample `S`.
///
/// Stages are compared by name, so two engines need not trace the same set: a stage only one
/// of them traces is listed in the report as not compared.
pub trait Traced<S: ?Sized> {
    /// A short name for reports (`f32`, `int8`, `cuda-fp16`).
    fn label(&self) -> String;
    /// The stages of one forward pass, in the order they are computed; the last is the output.
    fn trace(&mut self, sample: &S) -> Result<Vec<Stage>, TraceError>;
}

/// The comparison of one stage over the whole data set.
#[derive(Clone, Debug, PartialEq)]
pub struct StageReport {
    /// The stage's name.
    pub name: String,
    /// The largest relative Frobenius error over the samples.
    pub rel_frobenius: f64,
    /// The largest absolute error of any element.
    pub max_abs: f64,
    /// The smallest cosine similarity.
    pub min_cosine: f64,
    /// The sample with the largest relative Frobenius error.
    pub worst_sample: usize,
    /// The first failure of the tolerance on this stage (sample index, and the report).
    pub failure: Option<(usize, String)>,
}

/// What [`check_equivalent`] found: one row per stage compared, in trace order.
#[derive(Clone, Debug, PartialEq)]
pub struct EquivalenceReport {
    /// The fast engine's label.
    pub fast: String,
    /// The reference engine's label.
    pub reference: String,
    /// Number of samples run.
    pub samples: usize,
    /// Stages traced by both engines.
    pub stages: Vec<StageReport>,
    /// Stages traced by only one engine (not compared).
    pub uncompared: Vec<String>,
}

impl EquivalenceReport {
    /// Whether every compared stage held the tolerance on every sample.
    pub fn passed(&self) -> bool {
        self.stages.iter().all(|s| s.failure.is_none())
    }

    /// The first stage (in trace order) that broke the tolerance.
    pub fn first_failure(&self) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.failure.is_some())
    }

    /// The stage whose relative Frobenius error grew most over the stage before it, and by how
    /// much: where a fast path loses its accuracy (`None` with fewer than two stages). The
    /// growth is a difference, not a ratio, so the first quantized stage after an exact one
    /// does not win on a ratio of noise.
    pub fn largest_jump(&self) -> Option<(&StageReport, f64)> {
        self.stages
            .windows(2)
            .map(|w| (&w[1], w[1].rel_frobenius - w[0].rel_frobenius))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

impl fmt::Display for EquivalenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} vs {} over {} sample(s):",
            self.fast, self.reference, self.samples
        )?;
        writeln!(
            f,
            "  {:<24} {:>12} {:>12} {:>10}  status",
            "stage", "rel frob", "max abs", "cosine"
        )?;
        for s in &self.stages {
            let status = if s.failure.is_some() { "FAIL" } else { "ok" };
            writeln!(
                f,
                "  {:<24} {:>12.3e} {:>12.3e} {:>10.6}  {status}",
                s.name, s.rel_frobenius, s.max_abs, s.min_cosine
            )?;
        }
        if !self.uncompared.is_empty() {
            writeln!(f, "  not compared: {}", self.uncompared.join(", "))?;
        }
        if let Some((s, growth)) = self.largest_jump() {
            writeln!(
                f,
                "  largest error jump: {} (rel Frobenius error {growth:+.3e} over the stage before)",
                s.name
            )?;
        }
        match self.first_failure() {
            Some(s) => {
                let (sample, why) = s.failure.as_ref().expect("first_failure has one");
                write!(
                    f,
                    "  first stage out of tolerance: {} (sample {sample}):\n{why}",
                    s.name
                )
            }
            None => write!(f, "  every stage within tolerance"),
        }
    }
}

/// Why [`check_equivalent`] could not compare the engines at all.
#[derive(Debug)]
pub enum EquivalenceError {
    /// An engine's trace failed on a sample.
    Trace {
        /// The engine's label.
        engine: String,
        /// The sample's index.
        sample: usize,
        /// What the engine reported.
        source: TraceError,
    },
    /// The engines trace no stage of the same name.
    NothingInCommon {
        /// The fast engine's stage names.
        fast: Vec<String>,
        /// The reference engine's stage names.
        reference: Vec<String>,
    },
}

impl fmt::Display for EquivalenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EquivalenceError::Trace {
                engine,
                sample,
                source,
            } => write!(f, "engine {engine} failed on sample {sample}: {source}"),
            EquivalenceError::NothingInCommon { fast, reference } => write!(
                f,
                "the engines trace no stage in common (fast: {fast:?}, reference: {reference:?})"
            ),
        }
    }
}

impl std::error::Error for EquivalenceError {}

/// Runs both engines on every sample and compares each stage they both trace with `tol`.
///
/// Returns the report whether or not the tolerance held ([`EquivalenceReport::passed`]); an
/// error only when the engines could not be compared.
pub fn check_equivalent<S, F, R>(
    fast: &mut F,
    reference: &mut R,
    samples: &[S],
    tol: &Tolerance,
) -> Result<EquivalenceReport, EquivalenceError>
where
    F: Traced<S> + ?Sized,
    R: Traced<S> + ?Sized,
{
    let (fast_label, ref_label) = (fast.label(), reference.label());
    let mut stages: Vec<StageReport> = Vec::new();
    let mut uncompared = Vec::new();
    let mut names: (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for (i, sample) in samples.iter().enumerate() {
        let trace_err = |engine: &str| {
            let engine = engine.to_owned();
            move |source| EquivalenceError::Trace {
                engine,
                sample: i,
                source,
            }
        };
        let got = fast.trace(sample).map_err(trace_err(&fast_label))?;
        let want = reference.trace(sample).map_err(trace_err(&ref_label))?;
        if i == 0 {
            names = (
                got.iter().map(|s| s.name.clone()).collect(),
                want.iter().map(|s| s.name.clone()).collect(),
            );
            uncompared = got
                .iter()
                .filter(|s| !want.iter().any(|w| w.name == s.name))
                .chain(
                    want.iter()
                        .filter(|w| !got.iter().any(|s| s.name == w.name)),
                )
                .map(|s| s.name.clone())
                .collect();
        }
        let mut k = 0;
        for g in &got {
            let Some(w) = want.iter().find(|w| w.name == g.name) else {
                continue;
            };
            if i == 0 {
                stages.push(StageReport {
                    name: g.name.clone(),
                    rel_frobenius: 0.0,
                    max_abs: 0.0,
                    min_cosine: 1.0,
                    worst_sample: 0,
                    failure: None,
                });
            }
            let Some(report) = stages.get_mut(k).filter(|r| r.name == g.name) else {
                // A stage that appears only on later samples cannot be tracked consistently.
                continue;
            };
            k += 1;
            let mut cmp = Compare::new(&g.values, &w.values)
                .context(format_args!("{} vs {ref_label}, {}", fast_label, g.name));
            if let Some(shape) = g.shape.as_deref().or(w.shape.as_deref())
                && shape.iter().product::<usize>() == g.values.len()
            {
                cmp = cmp.shape(shape);
            }
            let m = cmp.measures(tol.rel_floor);
            if m.rel_frobenius > report.rel_frobenius {
                report.rel_frobenius = m.rel_frobenius;
                report.worst_sample = i;
            }
            report.max_abs = report.max_abs.max(m.max_abs);
            report.min_cosine = report.min_cosine.min(m.cosine);
            if report.failure.is_none()
                && let Err(e) = cmp.check(tol)
            {
                report.failure = Some((i, e.to_string()));
            }
        }
    }
    if stages.is_empty() && !samples.is_empty() {
        return Err(EquivalenceError::NothingInCommon {
            fast: names.0,
            reference: names.1,
        });
    }
    Ok(EquivalenceReport {
        fast: fast_label,
        reference: ref_label,
        samples: samples.len(),
        stages,
        uncompared,
    })
}

/// [`check_equivalent`], panicking with the per-stage report unless every stage held `tol`.
/// Returns the report so a test can also print it or check the error's size.
#[track_caller]
pub fn assert_equivalent<S, F, R>(
    fast: &mut F,
    reference: &mut R,
    samples: &[S],
    tol: &Tolerance,
) -> EquivalenceReport
where
    F: Traced<S> + ?Sized,
    R: Traced<S> + ?Sized,
{
    match check_equivalent(fast, reference, samples, tol) {
        Ok(report) if report.passed() => report,
        Ok(report) => panic!("{report}"),
        Err(e) => panic!("{e}"),
    }
}
