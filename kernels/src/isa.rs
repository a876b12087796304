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

    /// Parses a name as printed by [`Isa::name`] (case-insensitive). The int8 path names of
    /// [`I8Isa`] are accepted too and mean their f32 family (`avx512-vnni` -> `avx512`,
    /// `avx-vnni` -> `avx2`, `neon-dotprod` -> `neon`), so one `LITHE_ISA` value can force both
    /// the f32 and the int8 kernels.
    pub fn parse(name: &str) -> Result<Isa, KernelError> {
        let lower = name.trim().to_ascii_lowercase();
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == lower)
            .or_else(|| I8Isa::parse(name).ok().map(I8Isa::f32_family))
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

/// An int8 GEMM code path. Int8 has more paths than f32 because the dot-product instructions
/// (VNNI, `sdot`) are extensions of their own.
///
/// Names (for `LITHE_ISA`, case-insensitive): `scalar`, `avx2` (sign extension + `vpmaddwd`),
/// `avx-vnni` (ymm `vpdpbusd`), `avx512-vnni` (zmm `vpdpbusd`), `amx` (AMX-INT8 `tdpbssd`
/// tiles), `neon` (`smull`/`smlal2`/`sadalp`), `neon-dotprod` (`sdot`). The f32 name `avx512` means the best AVX-512 int8 path
/// (`avx512-vnni`); `vnni` means the best VNNI path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum I8Isa {
    /// Portable Rust: runs everywhere.
    Scalar,
    /// x86-64 AVX2: operands sign-extended to i16, `vpmaddwd` pairs.
    Avx2,
    /// x86-64 AVX-VNNI: 256-bit `vpdpbusd` (VEX encoding).
    AvxVnni,
    /// x86-64 AVX512-VNNI: 512-bit `vpdpbusd`.
    Avx512Vnni,
    /// x86-64 AMX-INT8: `tdpbssd` on 16 x 64 byte tiles (Sapphire Rapids and later).
    Amx,
    /// aarch64 Advanced SIMD without the dot-product extension: `smull`/`smlal2`/`sadalp`.
    Neon,
    /// aarch64 with the dot-product extension: `sdot`.
    NeonDotprod,
}

impl I8Isa {
    /// Every int8 path lithe knows, fastest first.
    pub const ALL: [I8Isa; 7] = [
        I8Isa::Amx,
        I8Isa::Avx512Vnni,
        I8Isa::AvxVnni,
        I8Isa::Avx2,
        I8Isa::NeonDotprod,
        I8Isa::Neon,
        I8Isa::Scalar,
    ];

    /// The name used by `LITHE_ISA` and in bench output.
    pub fn name(self) -> &'static str {
        match self {
            I8Isa::Scalar => "scalar",
            I8Isa::Avx2 => "avx2",
            I8Isa::AvxVnni => "avx-vnni",
            I8Isa::Avx512Vnni => "avx512-vnni",
            I8Isa::Amx => "amx",
            I8Isa::Neon => "neon",
            I8Isa::NeonDotprod => "neon-dotprod",
        }
    }

    /// The f32 path of the same instruction-set family.
    pub fn f32_family(self) -> Isa {
        match self {
            I8Isa::Scalar => Isa::Scalar,
            I8Isa::Avx2 | I8Isa::AvxVnni => Isa::Avx2,
            I8Isa::Avx512Vnni | I8Isa::Amx => Isa::Avx512,
            I8Isa::Neon | I8Isa::NeonDotprod => Isa::Neon,
        }
    }

    /// Parses a name (see the type docs), including the aliases `avx512` and `vnni`.
    pub fn parse(name: &str) -> Result<I8Isa, KernelError> {
        let lower = name.trim().to_ascii_lowercase().replace('_', "-");
        match lower.as_str() {
            "avx512" | "avx512vnni" => return Ok(I8Isa::Avx512Vnni),
            "avxvnni" => return Ok(I8Isa::AvxVnni),
            "amx-int8" | "amxint8" => return Ok(I8Isa::Amx),
            "dotprod" | "neondotprod" => return Ok(I8Isa::NeonDotprod),
            "vnni" => {
                return Ok([I8Isa::Avx512Vnni, I8Isa::AvxVnni]
                    .into_iter()
                    .find(|p| p.is_supported())
                    .unwrap_or(I8Isa::Avx512Vnni));
            }
            _ => {}
        }
        I8Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == lower)
            .ok_or_else(|| KernelError::UnknownIsa(name.to_string()))
    }

    /// Whether this CPU can run the path (checked at run time).
    pub fn is_supported(self) -> bool {
        match self {
            I8Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            I8Isa::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            I8Isa::AvxVnni => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni")
            }
            #[cfg(target_arch = "x86_64")]
            I8Isa::Avx512Vnni => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            I8Isa::Amx => crate::arch::x86_amx_i8::amx_usable(),
            #[cfg(target_arch = "aarch64")]
            I8Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            I8Isa::NeonDotprod => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Returns `self` if supported, else [`KernelError::UnsupportedIsa`].
    pub fn check(self) -> Result<I8Isa, KernelError> {
        if self.is_supported() {
            Ok(self)
        } else {
            Err(KernelError::UnsupportedIsa(self.name()))
        }
    }

    /// Every int8 path this machine supports, fastest first (always ends with `Scalar`).
    pub fn available() -> Vec<I8Isa> {
        I8Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// The fastest int8 path this machine supports.
    pub fn best() -> I8Isa {
        I8Isa::available()[0]
    }

    /// The path named by `LITHE_ISA`, if set: an error if it names an unknown or unsupported
    /// path.
    pub fn from_env() -> Result<Option<I8Isa>, KernelError> {
        match std::env::var("LITHE_ISA") {
            Ok(name) if !name.trim().is_empty() => I8Isa::parse(&name)?.check().map(Some),
            _ => Ok(None),
        }
    }

    /// The path int8 kernels use by default: `LITHE_ISA` if set and valid, else
    /// [`I8Isa::best`]. Decided once per process; an invalid value is reported on stderr once
    /// and ignored.
    pub fn active() -> I8Isa {
        static ACTIVE: OnceLock<I8Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| match I8Isa::from_env() {
            Ok(Some(isa)) => isa,
            Ok(None) => I8Isa::best(),
            Err(e) => {
                eprintln!("lithe: ignoring LITHE_ISA for int8 kernels: {e}");
                I8Isa::best()
            }
        })
    }
}

impl std::fmt::Display for I8Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
    fn int8_names_round_trip_and_map_to_f32_families() {
        for isa in I8Isa::ALL {
            assert_eq!(I8Isa::parse(isa.name()).unwrap(), isa);
            assert_eq!(Isa::parse(isa.name()).unwrap(), isa.f32_family());
        }
        assert_eq!(I8Isa::parse("AVX512").unwrap(), I8Isa::Avx512Vnni);
        assert_eq!(I8Isa::parse("avx512_vnni").unwrap(), I8Isa::Avx512Vnni);
        assert!(I8Isa::parse("sse9").is_err());
        assert_eq!(*I8Isa::available().last().unwrap(), I8Isa::Scalar);
    }

    #[test]
    fn scalar_is_always_available_and_last() {
        let avail = Isa::available();
        assert_eq!(*avail.last().unwrap(), Isa::Scalar);
        assert!(avail.contains(&Isa::best()));
    }
}
