//! This machine's f32 fused-multiply-add peak, measured, so that benchmarks can say what
//! fraction of it a kernel achieves.
//!
//! Each thread runs a loop of independent FMAs on registers only (12 accumulators: enough to
//! cover the FMA latency on two ports), with the widest vectors lamina's kernels use here
//! (AVX-512 when available, else AVX2+FMA, else scalar). Counting 2 FLOPs per lane per FMA,
//! the threads' summed rate is the peak: a figure that already includes the clock the cores
//! actually run at under load, which nominal-frequency formulas miss.
//!
//! [`bf16_dot_speedup`] compares, the same way, AVX512-BF16's `vdpbf16ps` with the f32 FMA:
//! the bf16 path only pays where the CPU retires more multiply-adds per cycle with it.

use std::time::{Duration, Instant};

/// The measured peak and how it was obtained.
#[derive(Debug, Clone)]
pub struct FmaPeak {
    /// GFLOP/s of all threads together.
    pub gflops: f64,
    pub threads: usize,
    /// Lanes per FMA instruction (16 for AVX-512, 8 for AVX2, 1 scalar).
    pub lanes: usize,
    /// "AVX-512", "AVX2+FMA" or "scalar".
    pub isa: &'static str,
}

impl FmaPeak {
    /// One line stating how the peak was computed.
    pub fn describe(&self) -> String {
        format!(
            "{:.1} GFLOP/s = {} threads x {:.1} GFLOP/s, measured with a register-only loop of {}-lane {} FMAs (12 independent accumulators, 2 FLOPs per lane per FMA)",
            self.gflops,
            self.threads,
            self.gflops / self.threads as f64,
            self.lanes,
            self.isa
        )
    }
}

/// Measure the peak with `threads` threads running concurrently for about `duration`.
pub fn measure_fma_peak(threads: usize, duration: Duration) -> FmaPeak {
    let threads = threads.max(1);
    let (isa, lanes) = isa();
    let rates: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(move || thread_rate(duration))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).collect()
    });
    FmaPeak { gflops: rates.iter().sum::<f64>() / 1e9, threads, lanes, isa }
}

fn isa() -> (&'static str, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return ("AVX-512", 16);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return ("AVX2+FMA", 8);
        }
    }
    ("scalar", 1)
}

/// FLOP/s of one thread.
fn thread_rate(duration: Duration) -> f64 {
    const ITERS: u64 = 1 << 20;
    let (_, lanes) = isa();
    let start = Instant::now();
    let mut rounds = 0u64;
    let mut sink = 0.0f32;
    while start.elapsed() < duration {
        sink += fma_loop(ITERS);
        rounds += 1;
    }
    std::hint::black_box(sink);
    (rounds * ITERS * 12 * lanes as u64 * 2) as f64 / start.elapsed().as_secs_f64()
}

fn fma_loop(iters: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected just above.
            return unsafe { fma_loop_avx512(iters) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features were detected just above.
            return unsafe { fma_loop_avx2(iters) };
        }
    }
    let mut acc = [1.0f32; 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_loop_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let (m, a) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, m, a);
        }
    }
    acc.iter().map(|&r| _mm512_reduce_add_ps(r)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_loop_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let (m, a) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, m, a);
        }
    }
    let mut out = [0.0f32; 8];
    let sum = acc.iter().fold(_mm256_setzero_ps(), |s, &r| _mm256_add_ps(s, r));
    // SAFETY: `out` holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    out.iter().sum()
}

/// How many times more multiply-adds per second one thread retires with `vdpbf16ps` (32 per
/// instruction) than with 16-lane f32 FMAs (16 per instruction), both in register-only loops
/// of 12 independent accumulators; None without AVX512-BF16. About 2 where the bf16 dot
/// product issues at the FMA's rate (AMD Zen 4); 0.50 measured on an Intel Xeon of CPUID
/// model 207 (no AMX), where the bf16 path has no compute to gain and only its conversions to
/// pay. Takes a few milliseconds: rounds of both loops, interleaved so that a change of clock
/// or load hits both, each side's best round kept.
pub fn bf16_dot_speedup() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if !(std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")) {
            return None;
        }
        const ITERS: u64 = 1 << 14;
        let best_seconds = |f: &dyn Fn() -> f32| {
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(f());
                    start.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let (mut fma, mut dot) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            // SAFETY (both): AVX-512F and AVX512-BF16 were detected above.
            fma = fma.min(best_seconds(&|| unsafe { fma_loop_avx512(ITERS) }));
            dot = dot.min(best_seconds(&|| unsafe { bf16_dot_loop_avx512(ITERS) }));
        }
        // The same number of instructions each: 32 multiply-adds per dot, 16 per FMA.
        Some(2.0 * fma / dot)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
fn bf16_dot_loop_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    // Small values whose products and sums stay normal over any number of iterations.
    let pair = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-7), _mm512_set1_ps(-1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_dpbf16_ps(*r, pair, pair);
        }
    }
    acc.iter().map(|&r| _mm512_reduce_add_ps(r)).sum()
}
