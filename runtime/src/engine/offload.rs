//! How many of a model's layers go to the GPU, checked before llama.cpp tries.
//!
//! llama.cpp offloads the *last* `n_gpu_layers` repeating layers (blocks) of a model, plus the
//! output head once `n_gpu_layers` exceeds the block count; the token embeddings stay on the
//! CPU. Without a check, asking for more than the GPUs hold ends in an allocation failure deep
//! inside llama.cpp. Here the weight bytes of exactly those tensors are summed from the GGUF
//! header and compared with the free memory of the GPU devices, so that the caller gets an
//! error that says how many layers do fit (a partial offload is then a choice, not a crash).
//! KV cache and compute buffers come on top at session creation; a session that does not fit
//! fails there with `Error::ContextCreation`.

use std::path::Path;

use super::compute_backends::{devices, DeviceInfo};
use crate::error::{Error, Result};
use crate::weights::gguf::Gguf;

/// The offload llama.cpp will perform for `requested` GPU layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffloadPlan {
    /// Layers that will be on a GPU (0 when no GPU device is loaded).
    pub layers: u32,
    /// The model's repeating layers plus its output head: the most that can be offloaded
    /// (0 when nothing is to be offloaded, and the header was not read).
    pub max_layers: u32,
}

/// Tensor bytes per offloadable layer: index `i < n_layer` is block `i`, index `n_layer` the
/// output head (`output.weight` and `output_norm.weight`).
fn layer_bytes(gguf: &Gguf, n_layer: u32) -> Vec<u64> {
    let mut bytes = vec![0u64; n_layer as usize + 1];
    for t in gguf.tensors() {
        if let Some(rest) = t.name.strip_prefix("blk.") {
            if let Some(i) = rest.split('.').next().and_then(|i| i.parse::<usize>().ok()) {
                if i < n_layer as usize {
                    bytes[i] += t.size;
                }
            }
        } else if t.name.starts_with("output") {
            bytes[n_layer as usize] += t.size;
        }
    }
    bytes
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Check that `requested` layers of the model at `path` fit in the GPUs' free memory.
pub(crate) fn plan(path: &Path, requested: u32) -> Result<OffloadPlan> {
    let gpus: Vec<_> = devices().into_iter().filter(|d| d.kind.takes_offloaded_layers()).collect();
    if requested == 0 || gpus.is_empty() {
        // Nothing to fit: skip reading the header (the vocabulary alone is ~100k strings),
        // which would only add to the load time.
        return Ok(OffloadPlan { layers: 0, max_layers: 0 });
    }
    // Files our reader cannot parse are left to llama.cpp, which reports its own reason.
    let Ok(gguf) = Gguf::open(path) else {
        return Ok(OffloadPlan { layers: requested, max_layers: 0 });
    };
    let arch = gguf.get_str("general.architecture").unwrap_or("llama").to_string();
    let Ok(n_layer) = gguf.get_u32(&format!("{arch}.block_count")) else {
        return Ok(OffloadPlan { layers: requested, max_layers: 0 });
    };
    decide(path, &layer_bytes(&gguf, n_layer), requested, &gpus)
}

/// The plan for a model whose offloadable layers weigh `bytes` (blocks, then the output
/// head), given the GPU devices.
fn decide(path: &Path, bytes: &[u64], requested: u32, gpus: &[DeviceInfo]) -> Result<OffloadPlan> {
    let max_layers = bytes.len() as u32;
    if requested == 0 || gpus.is_empty() {
        return Ok(OffloadPlan { layers: 0, max_layers });
    }
    let layers = requested.min(max_layers);
    // Offloaded layers, counted from the output head downwards.
    let from_top = |k: u32| -> u64 { bytes.iter().rev().take(k as usize).sum() };
    let needed = from_top(layers);
    let free: u64 = gpus.iter().map(|d| d.memory_free as u64).sum();
    if needed > free {
        let fitting = (0..=layers).rev().find(|&k| from_top(k) <= free).unwrap_or(0);
        let names: Vec<String> =
            gpus.iter().map(|d| format!("{} ({}, {:.0} MiB free)", d.name, d.description, mib(d.memory_free as u64))).collect();
        return Err(Error::Backend(format!(
            "{layers} offloaded layers of {} need {:.0} MiB of GPU memory for their weights, but {} {} only {:.0} MiB free; \
             at most {fitting} layers fit (pass that as the GPU layer count for a partial offload, the rest runs on the CPU)",
            path.display(),
            mib(needed),
            names.join(", "),
            if gpus.len() == 1 { "has" } else { "have" },
            mib(free),
        )));
    }
    Ok(OffloadPlan { layers, max_layers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::gguf::{GgufWriter, MetaValue};
    use crate::weights::GgmlType;

    #[test]
    fn layer_bytes_follow_llama_cpp_layer_assignment() {
        let dir = std::env::temp_dir().join(format!("lamina-offload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tiny.gguf");
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", MetaValue::String("llama".into())).unwrap();
        w.add_metadata("llama.block_count", MetaValue::U32(2)).unwrap();
        let f32s = |n: usize| vec![0u8; n * 4];
        w.add_tensor("token_embd.weight", GgmlType::F32, &[4, 8], f32s(32)).unwrap();
        w.add_tensor("blk.0.attn_q.weight", GgmlType::F32, &[4, 4], f32s(16)).unwrap();
        w.add_tensor("blk.1.attn_q.weight", GgmlType::F32, &[4, 2], f32s(8)).unwrap();
        w.add_tensor("blk.1.ffn_up.weight", GgmlType::F32, &[4, 1], f32s(4)).unwrap();
        w.add_tensor("output_norm.weight", GgmlType::F32, &[4], f32s(4)).unwrap();
        w.write(&path).unwrap();
        let gguf = Gguf::open(&path).unwrap();
        assert_eq!(layer_bytes(&gguf, 2), vec![64, 48, 16]);
        std::fs::remove_dir_all(&dir).ok();
    }

    fn gpu(free_mib: usize) -> DeviceInfo {
        DeviceInfo {
            name: "CUDA0".into(),
            description: "Test GPU".into(),
            backend: "CUDA".into(),
            kind: super::super::compute_backends::DeviceKind::Gpu,
            memory_total: (2 * free_mib) << 20,
            memory_free: free_mib << 20,
        }
    }

    #[test]
    fn offload_fits_or_says_how_many_layers_do() {
        let path = Path::new("model.gguf");
        // Four blocks of 100 MiB and a 50 MiB head.
        let bytes: Vec<u64> = vec![100 << 20, 100 << 20, 100 << 20, 100 << 20, 50 << 20];
        // No GPU, or 0 layers asked: everything stays on the CPU.
        assert_eq!(decide(path, &bytes, 99, &[]).unwrap(), OffloadPlan { layers: 0, max_layers: 5 });
        assert_eq!(decide(path, &bytes, 0, &[gpu(1000)]).unwrap().layers, 0);
        // Enough memory: the request, capped at blocks + head.
        assert_eq!(decide(path, &bytes, 99, &[gpu(1000)]).unwrap().layers, 5);
        assert_eq!(decide(path, &bytes, 2, &[gpu(200)]).unwrap().layers, 2);
        // 260 MiB free holds the head and two blocks (250 MiB), not all 450 MiB.
        let err = decide(path, &bytes, 99, &[gpu(260)]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Backend);
        let msg = err.to_string();
        assert!(msg.contains("need 450 MiB") && msg.contains("260 MiB free") && msg.contains("at most 3 layers fit"), "{msg}");
        // Free memory of several GPUs adds up.
        assert_eq!(decide(path, &bytes, 99, &[gpu(230), gpu(230)]).unwrap().layers, 5);
    }
}
