//! Which of llama.cpp's CPU backend variants this process can really run.
//!
//! ggml rates a variant (`ggml_backend_score`) by the instruction sets the processor lists
//! through CPUID, never by what the operating system enables. A processor can list AVX-512 or
//! AMX while the kernel or hypervisor does not save their registers (XCR0) or, for AMX, does not
//! grant the process the tile state (Linux's `arch_prctl(ARCH_REQ_XCOMP_PERM)`); a variant built
//! for them then dies with SIGILL on its first such instruction, typically in a worker thread
//! in the middle of a decode. The loader asks this module before it loads a variant, and skips
//! one whose instruction sets are listed but unusable, with the reason, so the next best
//! variant runs instead.
//!
//! Usable here means: listed by CPUID *and* enabled by the OS (std's feature detection checks
//! XCR0 for AVX and AVX-512), and for AMX the tile-data permission granted. Requesting that
//! permission early, before any llama.cpp thread exists, is harmless (ggml requests it again
//! itself) and is what makes "granted" a fact rather than a guess.
//!
//! `$LAMINA_CPU_DISABLE` (a comma-separated list of `avx`, `avx2`, `avx512`, `amx`) treats
//! those as unusable too: to keep a process off AVX-512 or AMX on purpose, or to check the
//! fallback on a machine that has them.

/// An instruction-set family a ggml CPU variant may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx,
    Avx2,
    Avx512,
    Amx,
}

/// The families the variant named in `file_name` (`libggml-cpu-<name>.so`) is compiled for,
/// from ggml's list of x86 variants (ggml/src/CMakeLists.txt). Unknown names require nothing
/// beyond what ggml's own score checks.
pub(crate) fn required_isas(file_name: &str) -> &'static [Isa] {
    let Some(variant) = file_name.strip_prefix("libggml-cpu-").and_then(|n| n.split('.').next()) else {
        return &[];
    };
    match variant {
        "sandybridge" | "ivybridge" | "piledriver" => &[Isa::Avx],
        "haswell" | "alderlake" => &[Isa::Avx, Isa::Avx2],
        "skylakex" | "cannonlake" | "cascadelake" | "icelake" | "cooperlake" | "zen4" => &[Isa::Avx, Isa::Avx2, Isa::Avx512],
        "sapphirerapids" => &[Isa::Avx, Isa::Avx2, Isa::Avx512, Isa::Amx],
        _ => &[],
    }
}

/// Environment variable naming instruction-set families not to use (see the module docs).
pub(crate) const CPU_DISABLE_ENV: &str = "LAMINA_CPU_DISABLE";

impl Isa {
    fn name(self) -> &'static str {
        match self {
            Isa::Avx => "avx",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Amx => "amx",
        }
    }
}

/// Why `isa` cannot be used in this process although the processor may list it; `None` when it
/// is usable or not listed at all (ggml's score already refuses a variant whose instructions
/// are not listed).
pub(crate) fn unusable_reason(isa: Isa) -> Option<String> {
    if let Some(list) = std::env::var_os(CPU_DISABLE_ENV) {
        if list.to_string_lossy().split(',').any(|item| item.trim().eq_ignore_ascii_case(isa.name())) {
            return Some(format!("{} is disabled by {CPU_DISABLE_ENV}", isa.name()));
        }
    }
    imp::unusable_reason(isa)
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::Isa;
    use std::sync::OnceLock;

    /// CPUID leaf 7 (EBX, EDX): what the processor lists.
    fn leaf7() -> (u32, u32) {
        // SAFETY: CPUID is available on every x86-64 processor; leaf 7 exists when the
        // maximum leaf (leaf 0's EAX) is at least 7, checked first.
        #[allow(unused_unsafe)]
        unsafe {
            let max = core::arch::x86_64::__cpuid(0).eax;
            if max < 7 {
                return (0, 0);
            }
            let r = core::arch::x86_64::__cpuid_count(7, 0);
            (r.ebx, r.edx)
        }
    }

    fn listed(isa: Isa) -> bool {
        let (ebx, edx) = leaf7();
        match isa {
            // Leaf 1 ECX bit 28; std reads it without the OS check through "avx" below, so
            // treat AVX as listed whenever leaf 1 says so.
            Isa::Avx => {
                // SAFETY: leaf 1 exists on every x86-64 processor.
                #[allow(unused_unsafe)]
                let ecx = unsafe { core::arch::x86_64::__cpuid(1).ecx };
                ecx & (1 << 28) != 0
            }
            Isa::Avx2 => ebx & (1 << 5) != 0,
            Isa::Avx512 => ebx & (1 << 16) != 0, // AVX512F
            Isa::Amx => edx & (1 << 24) != 0,    // AMX-TILE
        }
    }

    pub(super) fn unusable_reason(isa: Isa) -> Option<String> {
        if !listed(isa) {
            return None;
        }
        let enabled = match isa {
            Isa::Avx => std::is_x86_feature_detected!("avx"),
            Isa::Avx2 => std::is_x86_feature_detected!("avx2"),
            Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
            Isa::Amx => return amx_permission().clone().err(),
        };
        (!enabled).then(|| {
            let name = match isa {
                Isa::Avx => "AVX",
                Isa::Avx2 => "AVX2",
                _ => "AVX-512",
            };
            format!("the processor lists {name}, but the operating system does not enable its registers (XCR0)")
        })
    }

    /// The AMX tile-data permission for this process, requested once.
    fn amx_permission() -> &'static Result<(), String> {
        static PERMISSION: OnceLock<Result<(), String>> = OnceLock::new();
        PERMISSION.get_or_init(request_amx)
    }

    #[cfg(target_os = "linux")]
    fn request_amx() -> Result<(), String> {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain system call with integer arguments; it only changes which register
        // state the kernel lets this process use.
        let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!(
                "the processor lists AMX, but the kernel refused this process the tile state (arch_prctl ARCH_REQ_XCOMP_PERM: {})",
                std::io::Error::last_os_error()
            ))
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn request_amx() -> Result<(), String> {
        // Other systems grant AMX state without a request (Windows) or have no AMX CPUs.
        Ok(())
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::Isa;

    pub(super) fn unusable_reason(_isa: Isa) -> Option<String> {
        None
    }
}

/// The first reason the variant in `file_name` cannot run here, if any.
pub(crate) fn variant_unusable(file_name: &str) -> Option<String> {
    required_isas(file_name).iter().find_map(|&isa| unusable_reason(isa))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_map_to_their_instruction_sets() {
        assert_eq!(required_isas("libggml-cpu-x64.so"), &[] as &[Isa]);
        assert_eq!(required_isas("libggml-cpu-sse42.so"), &[] as &[Isa]);
        assert_eq!(required_isas("libggml-cpu-haswell.so"), &[Isa::Avx, Isa::Avx2]);
        assert!(required_isas("libggml-cpu-zen4.so").contains(&Isa::Avx512));
        assert!(!required_isas("libggml-cpu-zen4.so").contains(&Isa::Amx));
        assert!(required_isas("libggml-cpu-sapphirerapids.so").contains(&Isa::Amx));
        assert_eq!(required_isas("libggml-cuda.so"), &[] as &[Isa]);
    }

    #[test]
    fn what_this_machine_reports_is_consistent_with_std() {
        // On any machine: a usable-per-std feature is never reported unusable.
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                assert_eq!(unusable_reason(Isa::Avx2), None);
            }
            if std::is_x86_feature_detected!("avx512f") {
                assert_eq!(unusable_reason(Isa::Avx512), None);
            }
            println!("AMX on this machine: {:?}", unusable_reason(Isa::Amx).unwrap_or_else(|| "usable or not listed".into()));
        }
    }
}
