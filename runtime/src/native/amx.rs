//! AMX tiles for the bf16 weight products: `tdpbf16ps` multiplies a 16 × 32 bf16 tile by a
//! 32 × 16 one into 16 × 16 f32 sums, 8,192 multiply-adds per instruction, where AVX512-BF16's
//! `vdpbf16ps` does 32. The operands are the bf16 kernel's own (`bf16.rs`): A's bf16 rows are a
//! tile's rows as they lie (32 depth elements = 64 bytes each, at A's row stride), and a B
//! panel `[kp/2][NR][2]` holds, per 16 depth pairs, two 16-column tiles 128 bytes apart per row.
//! So nothing is packed differently: [`block_32x32`] runs one 32 × 32 output block (two A
//! tiles, two B tiles, four sum tiles) over whole groups of 16 depth pairs, and the bf16
//! kernel finishes the block (any remaining pairs, the low-rank term, the masked store).
//!
//! Tile state is per thread and shared with anything else in the thread that uses AMX, which
//! in lamina is llama.cpp: ggml's AMX kernels configure their tile shapes once per thread and
//! never again, and a rayon worker or the caller's thread may also run ggml's graph (its
//! OpenMP master is the calling thread). So every product takes a [`Tiles`] guard that saves
//! the thread's configuration (`sttilecfg`), loads lamina's, and on drop loads the saved one
//! back, or releases the tiles where none was loaded. Tile data is never kept between calls
//! (ggml neither), so this is all either side needs.
//!
//! Linux hands out the tile-data state only on request (`arch_prctl(ARCH_REQ_XCOMP_PERM)`,
//! granted for the whole process; [`available`] asks once, through `cpu_support`); without
//! it the first tile instruction is SIGILL, so nothing here runs before the grant.
//! `LAMINA_CPU_DISABLE=amx` keeps the native engine off AMX as it keeps llama.cpp's variants.
//!
//! The instructions are reached through `asm!`: Rust's AMX intrinsics are not stable.

#[cfg(target_arch = "x86_64")]
use std::arch::asm;

/// Whether the bf16 kernel may use AMX tiles in this process: the processor lists AMX-TILE and
/// AMX-BF16, the OS enables their state (XCR0 bits 17 and 18) and granted this process the
/// tile data, `LAMINA_CPU_DISABLE` does not name `amx`, and the AVX512-BF16 kernel that
/// finishes each block is available.
pub fn available() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| unavailable_reason().is_none())
}

/// Why [`available`] is false, for `lamina info` and the benchmarks; None when it is true.
pub fn unavailable_reason() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        if !listed() {
            return Some("this processor has no AMX-BF16".into());
        }
        if !super::bf16::available() {
            return Some("AVX512-BF16 (which finishes each tile block) is not available".into());
        }
        // SAFETY: XGETBV with ECX = 0 exists where the OS enabled XSAVE, which AVX-512
        // (checked through bf16::available above) requires.
        let xcr0 = unsafe { std::arch::x86_64::_xgetbv(0) };
        if xcr0 & (0b11 << 17) != 0b11 << 17 {
            return Some("the processor lists AMX, but the operating system does not enable its tile state (XCR0)".into());
        }
        crate::cpu_support::unusable_reason(crate::cpu_support::Isa::Amx)
    }
    #[cfg(not(target_arch = "x86_64"))]
    Some("AMX exists on x86-64 only".into())
}

/// CPUID leaf 7: AMX-BF16 (EDX bit 22) and AMX-TILE (EDX bit 24).
#[cfg(target_arch = "x86_64")]
fn listed() -> bool {
    // SAFETY: CPUID exists on every x86-64 processor; leaf 7 is read only where leaf 0 says
    // it exists.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        if __cpuid(0).eax < 7 {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        edx & (1 << 22) != 0 && edx & (1 << 24) != 0
    }
}

/// A 64-byte tile configuration (palette 1), as `ldtilecfg` reads it and `sttilecfg` writes it.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

#[cfg(target_arch = "x86_64")]
impl TileConfig {
    /// lamina's shapes: all eight tiles 16 rows of 64 bytes (sums: 16 f32; A: 32 bf16 of
    /// depth; B: 16 depth pairs of 16 columns).
    fn lamina() -> TileConfig {
        let mut c = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
        for t in 0..8 {
            c.colsb[t] = 64;
            c.rows[t] = 16;
        }
        c
    }
}

/// lamina's tile configuration loaded in this thread for the guard's lifetime; the thread's
/// previous configuration (or none) is back after it. Create one only where [`available`].
#[cfg(target_arch = "x86_64")]
pub struct Tiles {
    saved: TileConfig,
    /// Not Send: the tile state belongs to the thread that loaded it.
    _thread: std::marker::PhantomData<*const ()>,
}

#[cfg(target_arch = "x86_64")]
impl Tiles {
    /// # Safety
    /// [`available`] must be true (else the tile instructions are SIGILL).
    pub unsafe fn load() -> Tiles {
        let mut saved = TileConfig { palette: 0, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
        let ours = TileConfig::lamina();
        // SAFETY: AMX is usable (the caller's contract); both operands are 64 aligned bytes.
        unsafe {
            asm!("sttilecfg [{0}]", in(reg) &mut saved as *mut TileConfig, options(nostack));
            asm!("ldtilecfg [{0}]", in(reg) &ours as *const TileConfig, options(nostack, readonly));
        }
        Tiles { saved, _thread: std::marker::PhantomData }
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: a Tiles exists only where AMX is usable; `saved` is what sttilecfg wrote
        // (palette 0 when no tile was configured, which ldtilecfg would refuse: release then).
        unsafe {
            if self.saved.palette == 0 {
                asm!("tilerelease", options(nostack, nomem));
            } else {
                asm!("ldtilecfg [{0}]", in(reg) &self.saved as *const TileConfig, options(nostack, readonly));
            }
        }
    }
}

/// Depth pairs per tile step: one A tile row holds 32 bf16 of depth.
pub const PAIRS_PER_STEP: usize = 16;

/// Rows and columns of one [`block_32x32`] output block.
pub const BLOCK: usize = 32;

/// `C[r][j] (+)= Σ_{p < 16·steps} A[r][2p..2p+2] · B[p][j][..]` for a 32 × 32 block of f32
/// rows of stride `ldc` elements at `c`: the sums start from C's values where `add`, else from
/// zero, and are written over C. The bf16 kernel calls it on its own aligned block of sums
/// when something still has to join them (remaining pairs, a low-rank term, a partial panel),
/// and on the output itself otherwise.
///
/// # Safety
/// A [`Tiles`] guard lives in this thread; `steps ≥ 1`; `a` addresses 32 bf16 rows of stride
/// `lda` elements (even) with `32·steps` readable elements each; `b` a B panel (`[pairs][NR =
/// 32][2]` bf16) with `16·steps` readable pairs; `c` 32 rows of 32 writable (and, with `add`,
/// readable) f32 at stride `ldc`.
#[cfg(target_arch = "x86_64")]
pub unsafe fn block_32x32(steps: usize, a: *const u16, lda: usize, b: *const u16, c: *mut f32, ldc: usize, add: bool) {
    debug_assert!(steps >= 1);
    let (lda_bytes, ldc_bytes) = (lda * 2, ldc * 4);
    // SAFETY: within the operands the contract describes; the tile shapes are the guard's
    // (16 rows of 64 bytes). tmm0-3 sums (rows 0-15 and 16-31, columns 0-15 and 16-31),
    // tmm4-5 A's two row halves, tmm6-7 B's two column halves; A advances 64 bytes (32
    // elements) and B 2,048 bytes (16 pairs × 128) per step.
    unsafe {
        asm!(
            "test {add}, {add}",
            "jz 3f",
            "tileloadd tmm0, [{c} + {ldc}]",
            "tileloadd tmm1, [{c} + {ldc} + 64]",
            "tileloadd tmm2, [{c_hi} + {ldc}]",
            "tileloadd tmm3, [{c_hi} + {ldc} + 64]",
            "jmp 2f",
            "3:",
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{a} + {lda}]",
            "tileloadd tmm5, [{a_hi} + {lda}]",
            "tileloadd tmm6, [{b} + {ldb}]",
            "tileloadd tmm7, [{b} + {ldb} + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a}, 64",
            "add {a_hi}, 64",
            "add {b}, 2048",
            "dec {steps}",
            "jnz 2b",
            "tilestored [{c} + {ldc}], tmm0",
            "tilestored [{c} + {ldc} + 64], tmm1",
            "tilestored [{c_hi} + {ldc}], tmm2",
            "tilestored [{c_hi} + {ldc} + 64], tmm3",
            add = in(reg) usize::from(add),
            a = inout(reg) a => _,
            a_hi = inout(reg) a.wrapping_byte_add(16 * lda_bytes) => _,
            lda = in(reg) lda_bytes,
            b = inout(reg) b => _,
            ldb = in(reg) 128usize,
            steps = inout(reg) steps => _,
            c = in(reg) c,
            c_hi = in(reg) c.wrapping_byte_add(16 * ldc_bytes),
            ldc = in(reg) ldc_bytes,
            options(nostack),
        );
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn stored_config() -> TileConfig {
        let mut c = TileConfig { palette: 0, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
        // SAFETY: only called where AMX is available.
        unsafe { asm!("sttilecfg [{0}]", in(reg) &mut c as *mut TileConfig, options(nostack)) };
        c
    }

    /// The guard loads lamina's shapes and gives the thread back what it had: another
    /// configuration (as ggml leaves one), or none.
    #[test]
    fn tiles_restore_the_threads_configuration() {
        if !available() {
            eprintln!("skipped: {}", unavailable_reason().unwrap_or_default());
            return;
        }
        let before = stored_config().palette;
        {
            // SAFETY: AMX is available.
            let _t = unsafe { Tiles::load() };
            let c = stored_config();
            assert_eq!((c.palette, c.rows[7], c.colsb[7]), (1, 16, 64));
        }
        assert_eq!(stored_config().palette, before);
        // Someone else's shapes (ggml's first tile is 8 rows of 64 bytes) survive a product.
        let mut foreign = TileConfig::lamina();
        foreign.rows[0] = 8;
        foreign.colsb[2] = 32;
        // SAFETY: AMX is available; a valid palette-1 configuration.
        unsafe { asm!("ldtilecfg [{0}]", in(reg) &foreign as *const TileConfig, options(nostack, readonly)) };
        {
            // SAFETY: AMX is available.
            let _t = unsafe { Tiles::load() };
            assert_eq!(stored_config().rows[0], 16);
        }
        let c = stored_config();
        assert_eq!((c.rows[0], c.colsb[2], c.colsb[3]), (8, 32, 64));
        // SAFETY: AMX is available.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}
