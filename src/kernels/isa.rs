//! Which vector instructions the CPU kernels run: the widest the CPU has (detected once at run
//! time), or a narrower level named by the `LDMAE_CPU` environment variable, so that one host
//! measures and tests every path a user's CPU may take (`LDMAE_CPU=avx2` on an AVX-512 host is
//! what an AVX2 laptop runs).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use std::sync::OnceLock;

/// A level of vector instructions for the f32 CPU kernels (flex device), narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuLevel {
    /// What the target guarantees: SSE2 on x86-64, NEON on aarch64.
    Baseline,
    /// AVX2 with FMA (x86-64-v3).
    Avx2,
    /// AVX-512F with FMA (x86-64-v4).
    Avx512,
}

impl CpuLevel {
    /// The name `LDMAE_CPU` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Baseline, Self::Avx2, Self::Avx512].into_iter().find(|l| l.name() == s.trim().to_ascii_lowercase())
    }

    /// The widest level this CPU runs.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let fma = std::is_x86_feature_detected!("fma");
            if fma && std::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if fma && std::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
        }
        Self::Baseline
    }
}

impl fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the CPU kernels run on this machine in this process ([`cpu_kernels`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuKernels {
    /// The level the kernels run.
    pub level: CpuLevel,
    /// The widest level the CPU has.
    pub detected: CpuLevel,
    /// What `LDMAE_CPU` asked for, when it was set, and what became of it.
    pub request: Option<String>,
    /// The CPU features that the kernels or the GEMMs look for and this CPU has.
    pub features: Vec<&'static str>,
    /// Which f32 matrix product the models' linear layers run.
    pub gemm: &'static str,
}

impl fmt::Display for CpuKernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} kernels, f32 GEMM: {} (CPU: {}", self.level, self.gemm, self.features.join(" "))?;
        match &self.request {
            Some(request) => write!(f, "; {request})"),
            None => f.write_str(")"),
        }
    }
}

/// The kernels' level and what they run, fixed at the first call (the first CPU forward pass).
pub fn cpu_kernels() -> &'static CpuKernels {
    static KERNELS: OnceLock<CpuKernels> = OnceLock::new();
    KERNELS.get_or_init(|| {
        let detected = CpuLevel::detect();
        let (level, request) = match std::env::var("LDMAE_CPU") {
            Err(_) => (detected, None),
            Ok(asked) => match CpuLevel::parse(&asked) {
                Some(l) if l <= detected => (l, Some(format!("LDMAE_CPU={asked}"))),
                Some(l) => (detected, Some(format!("LDMAE_CPU={asked} ignored: this CPU has no {l}"))),
                None => (detected, Some(format!("LDMAE_CPU={asked} not understood (baseline, avx2 or avx512)"))),
            },
        };
        CpuKernels { level, detected, request, features: features(), gemm: super::gemm::name(level) }
    })
}

/// The kernels' level (see [`cpu_kernels`]).
pub(crate) fn level() -> CpuLevel {
    cpu_kernels().level
}

/// The features that matter here which this CPU has: the x86 levels' and F16C (f16 ↔ f32), or on
/// aarch64 half-precision arithmetic (`fp16`, which the f16 GEMM uses) and dot products.
fn features() -> Vec<&'static str> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    for (name, has) in [
        ("avx512f", std::is_x86_feature_detected!("avx512f")),
        ("avx2", std::is_x86_feature_detected!("avx2")),
        ("fma", std::is_x86_feature_detected!("fma")),
        ("f16c", std::is_x86_feature_detected!("f16c")),
    ] {
        if has {
            found.push(name);
        }
    }
    #[cfg(target_arch = "aarch64")]
    for (name, has) in [
        ("neon", std::arch::is_aarch64_feature_detected!("neon")),
        ("fp16", std::arch::is_aarch64_feature_detected!("fp16")),
        ("dotprod", std::arch::is_aarch64_feature_detected!("dotprod")),
    ] {
        if has {
            found.push(name);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(CpuLevel::parse(" AVX2 "), Some(CpuLevel::Avx2));
        assert_eq!(CpuLevel::parse("sse9"), None);
        assert!(CpuLevel::Baseline < CpuLevel::Avx2 && CpuLevel::Avx2 < CpuLevel::Avx512);
        // The level in use never exceeds what the CPU has, whatever LDMAE_CPU says.
        let k = cpu_kernels();
        assert!(k.level <= k.detected && k.level == level());
        assert!(k.to_string().starts_with(k.level.name()));
    }
}
