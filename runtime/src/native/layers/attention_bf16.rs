//! The bf16 path of causal attention: the same math as `attention.rs` (its module comment has
//! the shapes and the formulas), with the six products per (sequence, head) run by the bf16
//! kernel (`bf16::gemm_lhs`, f32 sums) instead of the f32 one. What is rounded to bf16 is what
//! PyTorch's bf16 autocast rounds in its attention: q, k, v, the probabilities and, in the
//! backward pass, the output gradient and the score gradients. The softmax, its backward, the
//! scale and every output stay f32.
//!
//! Why: the bf16 kernel retires twice the f32 kernel's multiply-adds. On Zen 4 attention was
//! a tenth of a LoRA training step (most of it the backward's four products and the
//! recomputed scores), all in f32; on this path its products run about 1.4 times as fast, and
//! its share of the step fell to 7.6% (the packing, the conversions and the softmaxes are
//! what remains).
//!
//! Operands, per (sequence, head), all from buffers this module fills once per call or per
//! head:
//! - left operands as bf16 rows: the head's queries and output gradients (columns of the
//!   whole projection, converted once per call), and P and dS (converted per head);
//! - left operands as transposes, `Pᵀ` and `dSᵀ`, written straight from P and dS in the pair
//!   layout the kernel reads ([`bf16::transpose_to_pairs`]);
//! - right operands as panels: `Kᵀ` and `Vᵀ` from the converted rows, and `V`, `K`, `Q`, `dO`
//!   interleaved from their f32 rows.
//!
//! The recomputed probabilities of the backward pass are the forward's bit for bit (the same
//! code on the same converted inputs), as on the f32 path.

use std::cell::RefCell;
use std::ops::Range;

use super::attention::{causal_softmax_row, AttentionShape};
use crate::native::avx512::Causal;
use crate::native::bf16::{self, Lhs};
use crate::native::matmul::SharedMut;

thread_local! {
    /// Per-thread packing buffers: right-operand panels, and a bf16 left operand.
    static SCRATCH: RefCell<(Vec<u16>, Vec<u16>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Whether attention of this shape takes the bf16 path: the shape asks for it, the CPU has
/// AVX512-BF16, and heads are an even number of elements wide (the kernel reads depth pairs
/// from inside whole projection rows).
pub(super) fn applies(shape: &AttentionShape) -> bool {
    shape.precision == crate::native::matmul::Precision::Bf16 && bf16::available() && shape.head_dim.is_multiple_of(2)
}

/// The whole buffer `x` (`rows × width` f32) as bf16 rows of stride
/// [`bf16::row_stride`]`(width)`.
pub(super) fn converted(x: &[f32], width: usize) -> bf16::Spare {
    let rows = x.len() / width;
    let mut out = bf16::Spare::take();
    bf16::convert_rows_par(&x[..rows * width], rows, width, 0, width, &mut out);
    out
}

/// Run `f` on this thread's packing buffers.
fn with_scratch<T>(f: impl FnOnce(&mut Vec<u16>, &mut Vec<u16>) -> T) -> T {
    let (mut panels, mut lhs) = SCRATCH.with(|c| c.take());
    let out = f(&mut panels, &mut lhs);
    SCRATCH.with(|c| c.replace((panels, lhs)));
    out
}

/// Geometry of one (sequence, head) task.
struct Head {
    len: usize,
    /// Offsets of the head's first row in the query-side (`n × n_heads·d`) and key/value-side
    /// (`n × n_kv·d`) f32 buffers, whose row strides are `qw` and `kw`.
    q_at: usize,
    kv_at: usize,
    qw: usize,
    kw: usize,
    /// The same for the converted bf16 buffers ([`converted`]), of strides `qb_ld`, `kb_ld`.
    qb_at: usize,
    kvb_at: usize,
    qb_ld: usize,
    kb_ld: usize,
    d: usize,
}

impl Head {
    fn new(seq: &Range<usize>, h: usize, shape: &AttentionShape) -> Head {
        let AttentionShape { n_heads, n_kv_heads, head_dim: d, .. } = *shape;
        let (qw, kw) = (n_heads * d, n_kv_heads * d);
        let (qb_ld, kb_ld) = (bf16::row_stride(qw), bf16::row_stride(kw));
        let kv = h / (n_heads / n_kv_heads);
        Head {
            len: seq.len(),
            q_at: seq.start * qw + h * d,
            kv_at: seq.start * kw + kv * d,
            qw,
            kw,
            qb_at: seq.start * qb_ld + h * d,
            kvb_at: seq.start * kb_ld + kv * d,
            qb_ld,
            kb_ld,
            d,
        }
    }
}

/// `P = softmax(scale · Q_h K_hᵀ)`, causal, into `scores` (`len × len`, zero above the
/// diagonal), from the converted queries `qb` and keys `kb`.
///
/// # Safety
/// The CPU has AVX512-BF16 ([`applies`]); the buffers have the sizes `attention.rs` checks.
unsafe fn probabilities(qb: &[u16], kb: &[u16], head: &Head, scores: &mut Vec<f32>, panels: &mut Vec<u16>) {
    let Head { len, d, .. } = *head;
    let scale = 1.0 / (d as f32).sqrt();
    scores.resize(len * len, 0.0);
    bf16::pack_b_from_bf16_rows_strided(&kb[head.kvb_at..], head.kb_ld, d, len, panels);
    // SAFETY: A is the head's len query rows (stride qb_ld, d wide); the output is len × len.
    // Causal: the blocks above the diagonal are not written, and the softmax never reads them.
    unsafe {
        bf16::gemm_lhs(
            len,
            len,
            d,
            Lhs::Rows { a: &qb[head.qb_at..], ld: head.qb_ld },
            panels,
            scores.as_mut_ptr(),
            len,
            false,
            Causal::Cols,
        )
    };
    for (i, row) in scores.chunks_exact_mut(len).enumerate() {
        row[..=i].iter_mut().for_each(|s| *s *= scale);
        causal_softmax_row(row, i);
    }
}

/// One (sequence, head) of the forward pass: `O_h = (P ∘ M) V_h` into its block of `dst`,
/// with `apply_mask` multiplying P by the dropout mask M (when there is one).
///
/// # Safety
/// As for [`probabilities`]; no one else writes the head's block of `dst`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn attend(
    qb: &[u16],
    kb: &[u16],
    v: &[f32],
    seq: &Range<usize>,
    h: usize,
    shape: &AttentionShape,
    apply_mask: impl FnOnce(&mut [f32]),
    dst: SharedMut,
    scores: &mut Vec<f32>,
) {
    let head = Head::new(seq, h, shape);
    let Head { len, d, .. } = head;
    with_scratch(|panels, lhs| {
        // SAFETY: forwarded.
        unsafe { probabilities(qb, kb, &head, scores, panels) };
        apply_mask(&mut scores[..len * len]);
        bf16::convert_rows(scores, len, len, 0, len, lhs);
        bf16::pack_b_from_depth_rows_strided(&v[head.kv_at..], head.kw, len, d, panels);
        // SAFETY: P (len rows of row_stride(len)) times V_h (len × d); P is zero above the
        // diagonal.
        unsafe {
            let a = Lhs::Rows { a: lhs, ld: bf16::row_stride(len) };
            bf16::gemm_lhs(len, d, len, a, panels, dst.at(head.q_at), head.qw, false, Causal::DepthTo)
        };
    });
}

/// The converted inputs of a backward pass.
pub(super) struct BackwardInputs<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub d_out: &'a [f32],
    pub qb: &'a [u16],
    pub kb: &'a [u16],
    pub vb: &'a [u16],
    pub d_out_b: &'a [u16],
}

/// One (sequence, head) of the backward pass: its columns of dQ written into `dq`, and its
/// `len × d` parts of dK and dV returned. `mask` applies the dropout mask to a `len × len`
/// matrix (nothing without dropout); `softmax_backward` turns dP into dS in place given P.
///
/// # Safety
/// As for [`probabilities`]; no one else writes the head's columns of `dq`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn backward_head(
    x: &BackwardInputs<'_>,
    seq: &Range<usize>,
    h: usize,
    shape: &AttentionShape,
    mask: impl Fn(&mut [f32]),
    softmax_backward: impl FnOnce(&[f32], &mut [f32]),
    dq: SharedMut,
    probs: &mut Vec<f32>,
    dp: &mut Vec<f32>,
) -> (Vec<f32>, Vec<f32>) {
    let head = Head::new(seq, h, shape);
    let Head { len, d, .. } = head;
    let scale = 1.0 / (d as f32).sqrt();
    let (mut dk_h, mut dv_h) = (vec![0.0f32; len * d], vec![0.0f32; len * d]);
    with_scratch(|panels, lhs| {
        // SAFETY (every product below): each operand is the head's rows of a buffer checked
        // by attention.rs, or a len × len / len × d buffer of this task; dq's block of the
        // head is this task's alone.
        unsafe {
            probabilities(x.qb, x.kb, &head, probs, panels);
            // dP = dO · Vᵀ, the lower triangle (dS is zeroed above it below).
            dp.resize(len * len, 0.0);
            bf16::pack_b_from_bf16_rows_strided(&x.vb[head.kvb_at..], head.kb_ld, d, len, panels);
            let d_out_h = Lhs::Rows { a: &x.d_out_b[head.qb_at..], ld: head.qb_ld };
            bf16::gemm_lhs(len, len, d, d_out_h, panels, dp.as_mut_ptr(), len, false, Causal::Cols);
            mask(&mut dp[..len * len]);
            softmax_backward(&probs[..len * len], &mut dp[..len * len]);
            mask(&mut probs[..len * len]);

            // dV_h = (P ∘ M)ᵀ · dO_h: Pᵀ is zero left of its diagonal.
            bf16::transpose_to_pairs(probs, len, len, len, lhs);
            bf16::pack_b_from_depth_rows_strided(&x.d_out[head.q_at..], head.qw, len, d, panels);
            bf16::gemm_lhs(len, d, len, Lhs::Pairs { a: lhs, ld: len }, panels, dv_h.as_mut_ptr(), d, false, Causal::DepthFrom);

            // The scale of the scores, once on dS for both of its products.
            dp.iter_mut().for_each(|g| *g *= scale);
            // dQ_h = dS · K_h (dS is zero above its diagonal).
            bf16::convert_rows(dp, len, len, 0, len, lhs);
            bf16::pack_b_from_depth_rows_strided(&x.k[head.kv_at..], head.kw, len, d, panels);
            let ds = Lhs::Rows { a: lhs, ld: bf16::row_stride(len) };
            bf16::gemm_lhs(len, d, len, ds, panels, dq.at(head.q_at), head.qw, false, Causal::DepthTo);
            // dK_h = dSᵀ · Q_h.
            bf16::transpose_to_pairs(dp, len, len, len, lhs);
            bf16::pack_b_from_depth_rows_strided(&x.q[head.q_at..], head.qw, len, d, panels);
            bf16::gemm_lhs(len, d, len, Lhs::Pairs { a: lhs, ld: len }, panels, dk_h.as_mut_ptr(), d, false, Causal::DepthFrom);
        }
    });
    (dk_h, dv_h)
}
