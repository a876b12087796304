//! Which instruction set the kernels run on: detected once, overridable with `LITHE_ISA`.
//!
//! Detection happens at first use and the answer is cached; kernels then call through function
//! pointers chosen for that ISA (see `gemm::KernelSet`). Tests and benches compare paths on one
//! machine either by setting `LITHE_ISA=scalar|avx2|avx512|neon` or by passing an [`Isa`]
//! explicitly (e.g. [`crate::GemmOptions::isa`]).

use crate::KernelError;
use std::sync::OnceLock;

/// A SIMD code path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust, no explicit SIMD: runs everywhere.
    Scalar,
    /// x86-64 AVX2 + FMA (256-bit).
    Avx2,
    /// x86-64 AVX-512F (512-bit).
    Avx512,
    /// aarch64 Advanced SIMD (128-bit).
    Neon,
}

impl Isa {
    /// Every path lithe knows, fastest first.
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Scalar];

    /// The name used by `LITHE_ISA` and in bench output.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Parses a name as printed by [`Isa::name`] (case-insensitive).
    pub fn parse(name: &str) -> Result<Isa, KernelError> {
        let lower = name.trim().to_ascii_lowercase();
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == lower)
            .ok_or_else(|| KernelError::UnknownIsa(name.to_string()))
    }

    /// Whether this CPU can run the path (checked at run time, not at compile time).
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Returns `self` if supported, else [`KernelError::UnsupportedIsa`].
    pub fn check(self) -> Result<Isa, KernelError> {
        if self.is_supported() {
            Ok(self)
        } else {
            Err(KernelError::UnsupportedIsa(self.name()))
        }
    }

    /// Every path this machine supports, fastest first (always ends with `Scalar`).
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// The fastest path this machine supports.
    pub fn best() -> Isa {
        Isa::available()[0]
    }

    /// The path named by `LITHE_ISA`, if the variable is set: an error if it names an unknown or
    /// unsupported path.
    pub fn from_env() -> Result<Option<Isa>, KernelError> {
        match std::env::var("LITHE_ISA") {
            Ok(name) if !name.trim().is_empty() => Isa::parse(&name)?.check().map(Some),
            _ => Ok(None),
        }
    }

    /// The path kernels use by default: `LITHE_ISA` if set and valid, else [`Isa::best`].
    /// Decided once per process. An invalid `LITHE_ISA` is reported on stderr once and ignored
    /// (callers that must fail instead use [`Isa::from_env`]).
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| match Isa::from_env() {
            Ok(Some(isa)) => isa,
            Ok(None) => Isa::best(),
            Err(e) => {
                eprintln!("lithe: ignoring LITHE_ISA: {e}");
                Isa::best()
            }
        })
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_rejects_unknown() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()).unwrap(), isa);
        }
        assert_eq!(Isa::parse(" AVX2 ").unwrap(), Isa::Avx2);
        assert!(matches!(
            Isa::parse("sse9"),
            Err(KernelError::UnknownIsa(_))
        ));
    }

    #[test]
    fn scalar_is_always_available_and_last() {
        let avail = Isa::available();
        assert_eq!(*avail.last().unwrap(), Isa::Scalar);
        assert!(avail.contains(&Isa::best()));
    }
}
