#!/usr/bin/env python3
"""lamina's native engine against PyTorch (+ transformers + peft) on the same CPU work.

Run it through scripts/bench-vs-pytorch.sh, which builds nothing but checks for the release
binary, fetches the default model and prepares a virtual environment with torch, transformers,
peft and safetensors; this file is the benchmark itself.

The work, at the same thread count on both sides:

- forward: one sequence of --seq-len tokens, logits for every position, no gradients;
- LoRA training: --batch-size sequences of --seq-len tokens per step, rank 8, alpha 16 on
  q, k, v, o, gate, up and down, dropout 0, AdamW, gradient clipping at 1.0 (lamina's default);
- full fine-tuning: every parameter trainable, AdamW, same batches.

PyTorch runs each in f32 and in bf16 autocast (f32 master weights). lamina runs the GGUF file,
as its users do: the forward pass through `lamina bench-native --forward-only` (the native
forward alone in its process, as PyTorch's is), training through the
user-facing `lamina finetune`. PyTorch loads lamina's own conversion of that GGUF file
(`lamina convert`, f32 safetensors + config.json + tokenizer.json), so both sides compute the
same model; the training text is /usr/share/common-licenses/GPL-3, cut into records with the
converted tokenizer so that both sides see the same tokens.

Every measurement is a fresh child process, and its peak RSS is that child's own (the kernel's
ru_maxrss of exactly that process, from wait4), so one workload's memory never hides another's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LAMINA_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lamina")
DEFAULT_TEXT = Path("/usr/share/common-licenses/GPL-3")
TARGETS_HF = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TARGETS_LAMINA = "q,k,v,o,gate,up,down"
LORA_RANK, LORA_ALPHA = 8, 16.0
LEARNING_RATE = 1e-4
MAX_GRAD_NORM = 1.0  # lamina's default; PyTorch clips the same way so both do the same work
CPU_FLAGS = ["avx2", "avx512f", "avx512_bf16", "amx_tile"]
RESULT_MARK = "BENCH-RESULT "  # prefix of the one line a PyTorch worker reports on stdout
NO_FULL = "n/a (lamina has no --full yet)"
REJECTED_FULL = "rejected"  # internal marker: `--full` was refused by the argument parser

# Never reach for a model hub: the PyTorch side loads a local directory only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def log(msg: str) -> None:
    print(f"bench-vs-pytorch: {msg}", file=sys.stderr, flush=True)


class Failure(Exception):
    """A workload that did not produce a number; the message says why."""


# ---------------------------------------------------------------------------------------------
# Child processes with their own peak RSS
# ---------------------------------------------------------------------------------------------


def run_child(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run `cmd` to completion and return its exit code, output, wall time and peak RSS.

    The peak RSS comes from wait4() on exactly this child: RUSAGE_CHILDREN would be the
    maximum over every child so far, which would let the largest workload hide the others.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        timed_out = False
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.perf_counter() - start > timeout:
                timed_out = True
                proc.kill()
                pid, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return {
            "rc": proc.returncode,
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
            "wall_s": wall,
            "peak_rss_mib": rusage.ru_maxrss / 1024.0,  # Linux reports KiB
            "timed_out": timed_out,
        }


def check_child(name: str, cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """run_child, raising Failure (with the tail of stderr) unless the child succeeded."""
    r = run_child(cmd, timeout, env)
    if r["timed_out"]:
        raise Failure(f"{name}: timed out after {timeout:.0f} s")
    if r["rc"] != 0:
        tail = "\n".join(r["stderr"].strip().splitlines()[-15:])
        raise Failure(f"{name}: exit status {r['rc']}\n{tail}")
    return r


# ---------------------------------------------------------------------------------------------
# Preparation: the converted model and the token records
# ---------------------------------------------------------------------------------------------


def lamina_binary(given: str | None) -> Path:
    if given:
        path = Path(given)
    elif os.environ.get("LAMINA_BIN"):
        path = Path(os.environ["LAMINA_BIN"])
    else:
        path = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release" / "lamina"
    if not (path.is_file() and os.access(path, os.X_OK)):
        sys.exit(f"bench-vs-pytorch: {path} not found; build it first with `cargo build --release`")
    return path.resolve()


def converted_model(lamina: Path, gguf: Path, timeout: float) -> Path:
    """lamina's safetensors conversion of `gguf`, made once and kept in the cache.

    The directory carries a stamp of the GGUF file it came from (path, size, mtime); a
    different or changed file is converted again. The conversion goes to a temporary
    directory first, so an interrupted run never leaves a half-written model to be reused.
    """
    st = gguf.stat()
    stamp = f"{gguf.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n"
    out = CACHE / "bench-hf" / gguf.stem
    stamp_file = out / ".lamina-source"
    if stamp_file.is_file() and stamp_file.read_text() == stamp and (out / "config.json").is_file():
        return out
    log(f"converting {gguf} to a safetensors directory in {out} (once)")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        check_child("lamina convert", [str(lamina), "convert", str(gguf), str(tmp), "--dtype", "f32"], timeout)
    except Failure as e:
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(f"bench-vs-pytorch: {e}")
    for needed in ("config.json", "tokenizer.json"):
        if not (tmp / needed).is_file():
            sys.exit(f"bench-vs-pytorch: lamina convert wrote no {needed} into {tmp}")
    (tmp / ".lamina-source").write_text(stamp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def make_records(hf_dir: Path, text_path: Path, seq_len: int) -> tuple[list[str], list[list[int]]]:
    """Cut the text into records of at least `seq_len` tokens, and their first `seq_len` tokens.

    lamina's trainer takes text records and tokenizes them itself; PyTorch takes token ids.
    Each record is a stretch of the text that tokenizes to seq_len + 16 tokens; lamina keeps
    its first seq_len tokens (`--truncate --max-len`), and PyTorch the first seq_len tokens of
    the same record tokenized with the converted tokenizer.json, so both train on the same ids
    as far as the two tokenizers agree (they are built from the same GGUF vocabulary).
    No BOS is added on either side: lamina's text records add none.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    text = text_path.read_text(encoding="utf-8")
    whole = tok.encode(text, add_special_tokens=False)
    offsets = whole.offsets
    span = seq_len + 16
    records, ids = [], []
    for start in range(0, len(offsets) - span + 1, seq_len):
        record = text[offsets[start][0] : offsets[start + span - 1][1]]
        enc = tok.encode(record, add_special_tokens=False).ids
        if len(enc) >= seq_len:
            records.append(record)
            ids.append(enc[:seq_len])
    if not records:
        sys.exit(f"bench-vs-pytorch: {text_path} is shorter than one record of {span} tokens")
    return records, ids


# ---------------------------------------------------------------------------------------------
# lamina's side
# ---------------------------------------------------------------------------------------------


def lamina_forward(args, lamina: Path, gguf: Path) -> dict:
    """`lamina bench-native --forward-only --json`: the native forward pass alone in its process
    (no llama.cpp model, no training pass), median of --reps after a warm-up."""
    cmd = [str(lamina), "bench-native", "--forward-only", "--model", str(gguf), "--threads", str(args.threads),
           "--seq-len", str(args.seq_len), "--reps", str(args.reps), "--json"]
    r = check_child("lamina bench-native", cmd, args.timeout)
    line = next((l for l in reversed(r["stdout"].splitlines()) if l.strip().startswith("{")), None)
    if line is None:
        raise Failure(f"lamina bench-native printed no JSON:\n{r['stdout'][-2000:]}")
    data = json.loads(line)
    return {
        "tokens_per_s": data["native_tokens_per_s"],
        "peak_rss_mib": r["peak_rss_mib"],
        "bench_native": data,
    }


TRAINED_RE = re.compile(r"trained (\d+) step\(s\) in ([0-9.]+) s")
LOSS_RE = re.compile(r"loss curve \(step:loss\): 1:([0-9.]+)")


def lamina_finetune_once(args, lamina: Path, gguf: Path, data: Path, out_dir: Path, steps: int, extra: list[str]) -> dict:
    """One `lamina finetune` run of `steps` steps; returns the trainer's own time for them.

    `lamina finetune` prints `trained N step(s) in S s`, timed around the training loop only:
    loading the model, tokenizing the data and writing the adapter are outside it.
    """
    cmd = [str(lamina), "finetune", "--model", str(gguf), "--data", str(data),
           "--output", str(out_dir / f"adapter-{steps}.gguf"), "--threads", str(args.threads),
           "--steps", str(steps), "--batch-size", str(args.batch_size), "--max-len", str(args.seq_len),
           "--truncate", "--lr", str(LEARNING_RATE), "--warmup", "0", "--schedule", "constant",
           "--max-grad-norm", str(MAX_GRAD_NORM), "--weight-decay", "0", "--seed", "0", *extra]
    r = check_child("lamina finetune" + (" " + " ".join(extra) if extra else ""), cmd, args.timeout)
    m = TRAINED_RE.search(r["stderr"])
    if not m or int(m.group(1)) != steps:
        raise Failure(f"lamina finetune did not report `trained {steps} step(s) in ... s`:\n{r['stderr'][-2000:]}")
    loss = LOSS_RE.search(r["stderr"])
    return {"train_s": float(m.group(2)), "wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"],
            "first_loss": float(loss.group(1)) if loss else None}


def lamina_train(args, lamina: Path, gguf: Path, data: Path, out_dir: Path, extra: list[str]) -> dict:
    """Training tokens/s: a 1-step run and a (1 + --steps)-step run, the difference timed.

    Subtracting the 1-step run's time leaves exactly --steps steps that follow a warm-up step,
    as on the PyTorch side (its first step is run and not timed). Both times are the trainer's
    own (see lamina_finetune_once), so model loading is outside them as well. The peak RSS is
    the longer run's.
    """
    warm = lamina_finetune_once(args, lamina, gguf, data, out_dir, 1, extra)
    full = lamina_finetune_once(args, lamina, gguf, data, out_dir, 1 + args.steps, extra)
    seconds = full["train_s"] - warm["train_s"]
    timing = f"trainer time of {1 + args.steps} steps minus that of 1 step"
    if seconds < 1.0:
        # The trainer prints tenths of a second: too coarse for so short a run (--quick). The
        # whole runs' wall times differ by the same steps, their load and export cancelling.
        seconds = full["wall_s"] - warm["wall_s"]
        timing = f"process wall time of {1 + args.steps} steps minus that of 1 step"
    if seconds <= 0:
        raise Failure(f"lamina finetune: {1 + args.steps} steps took no longer than 1 ({full['wall_s']:.3f} s vs {warm['wall_s']:.3f} s)")
    return {
        "tokens_per_s": args.batch_size * args.seq_len * args.steps / seconds,
        "seconds": seconds,
        "peak_rss_mib": full["peak_rss_mib"],
        "first_loss": full["first_loss"],
        "timing": timing,
    }


def lamina_has_full(lamina: Path) -> bool:
    r = run_child([str(lamina), "finetune", "--help"], 60)
    return re.search(r"--full\b", r["stdout"] + r["stderr"]) is not None


# ---------------------------------------------------------------------------------------------
# PyTorch's side: each measurement is `bench_vs_pytorch.py --worker ...` in a fresh process
# ---------------------------------------------------------------------------------------------


def pytorch(args, work: str, dtype: str, hf_dir: Path, ids_file: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", work, "--dtype", dtype,
           "--hf-dir", str(hf_dir), "--ids", str(ids_file), "--threads", str(args.threads),
           "--steps", str(args.steps), "--reps", str(args.reps), "--batch-size", str(args.batch_size),
           "--seq-len", str(args.seq_len)]
    # OpenMP sizes its pool from the environment when torch loads; set_num_threads in the
    # worker is the real setting, this keeps any pool created before it at the same size.
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    r = check_child(f"PyTorch {work} {dtype}", cmd, args.timeout, env)
    line = next((l for l in r["stdout"].splitlines() if l.startswith(RESULT_MARK)), None)
    if line is None:
        raise Failure(f"PyTorch {work} {dtype}: the worker reported nothing\n{r['stderr'][-2000:]}")
    result = json.loads(line[len(RESULT_MARK):])
    result["peak_rss_mib"] = r["peak_rss_mib"]
    return result


def worker(args) -> None:
    """One PyTorch measurement; prints one RESULT_MARK line of JSON."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):  # only settable before any parallel work
        torch.set_num_interop_threads(1)
    # transformers renamed `torch_dtype` to `dtype` (4.56); the old name only warns now.
    version = tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    dtype_kw = "dtype" if version >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(str(args.hf_dir), **{dtype_kw: torch.float32})
    ids = json.loads(Path(args.ids).read_text())
    n, b = args.seq_len, args.batch_size

    def amp():
        # bf16 autocast: matrix products in bf16, weights (and the optimizer) stay f32.
        return torch.autocast("cpu", dtype=torch.bfloat16) if args.dtype == "bf16" else contextlib.nullcontext()

    result = {"work": args.worker, "dtype": args.dtype, "threads": torch.get_num_threads(),
              "attn_implementation": getattr(model.config, "_attn_implementation", None)}
    if args.worker == "forward":
        model.eval()
        x = torch.tensor([ids[0][:n]])
        times = []
        with torch.inference_mode():
            for rep in range(1 + args.reps):  # the first is a warm-up
                start = time.perf_counter()
                with amp():
                    logits = model(input_ids=x).logits
                elapsed = time.perf_counter() - start
                if logits.shape[1] != n:
                    raise SystemExit(f"logits for {logits.shape[1]} positions, expected {n}")
                if rep:
                    times.append(elapsed)
        times.sort()
        result.update(tokens_per_s=n / times[len(times) // 2], seconds=times)
    else:
        if args.worker == "lora":
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=TARGETS_HF, lora_dropout=0.0))
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        result["trainable_params"] = sum(p.numel() for p in params)
        opt = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=0.0)
        batches = [ids[i:i + b] for i in range(0, len(ids) - b + 1, b)] or [(ids * b)[:b]]

        def step(k: int) -> float:
            x = torch.tensor(batches[k % len(batches)])
            with amp():
                loss = model(input_ids=x, labels=x).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()

        result["first_loss"] = step(0)  # warm-up: allocations, autograd graph, optimizer state
        start = time.perf_counter()
        for k in range(1, 1 + args.steps):
            step(k)
        seconds = time.perf_counter() - start
        result.update(tokens_per_s=b * n * args.steps / seconds, seconds=seconds)
    print(RESULT_MARK + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def cpu_info() -> dict:
    name, flags = "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown":
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return {"model": name, "flags": {f: f in flags for f in CPU_FLAGS}}


def load_average() -> float | None:
    """The 1-minute load average: how busy the machine was before the run started."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def version_of(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cell(result, key: str, fmt: str) -> str:
    if isinstance(result, dict) and result.get(key) is not None:
        return format(result[key], fmt)
    return result if isinstance(result, str) else "failed"


def lamina_timing(results: dict) -> str:
    """How lamina's training rows were timed (see lamina_train)."""
    timings = {results[w]["lamina"]["timing"] for w in ("lora", "full") if isinstance(results[w]["lamina"], dict)}
    return "; ".join(sorted(timings)) or "the trainer's time of 1 + steps steps minus that of 1 step"


def round_ratios(rounds: dict) -> list[float]:
    """lamina's tok/s over the faster PyTorch mode's, round by round (rounds where a side failed are left out)."""
    ratios = []
    for lam, f32, bf16 in zip(rounds["lamina"], rounds["f32"], rounds["bf16"]):
        torch_best = max((x for x in (f32, bf16) if x), default=None)
        if lam and torch_best:
            ratios.append(lam / torch_best)
    return ratios


def markdown(report: dict) -> str:
    cpu, r = report["cpu"], report["results"]
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in cpu["flags"].items())
    s = report["settings"]
    lines = [
        f"CPU: {cpu['model']} ({flags}); {s['threads']} threads; torch {report['versions']['torch']}, "
        f"transformers {report['versions']['transformers']}, peft {report['versions']['peft']}",
    ]
    load = report.get("load_average_before")
    if load is not None and load >= 0.5:
        # Another busy process costs PyTorch more than lamina: OpenMP's threads wait for each
        # other at every parallel region, and a descheduled one stalls all of them.
        lines.append(f"warning: load average {load:.2f} before the run; other processes were using the CPU, "
                     "so the numbers are low, PyTorch's (OpenMP) most")
    lines += [
        "",
        "| work | lamina tok/s | PyTorch f32 | PyTorch bf16 | lamina / faster PyTorch mode |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("forward", f"forward, 1 x {s['seq_len']}, all logits, no grad"),
        ("lora", f"LoRA training, {s['batch_size']} x {s['seq_len']}, r{LORA_RANK}, 7 targets"),
        ("full", f"full fine-tune, {s['batch_size']} x {s['seq_len']}"),
    ]

    def faster(work):
        """The PyTorch mode with the higher tokens/s on this work, or None."""
        modes = [m for m in ("f32", "bf16") if isinstance(r[work][m], dict)]
        return max(modes, key=lambda m: r[work][m]["tokens_per_s"], default=None)

    for work, label in rows:
        lam, best = r[work]["lamina"], faster(work)
        ratio = "-"
        if isinstance(lam, dict) and best:
            ratio = f"{lam['tokens_per_s'] / r[work][best]['tokens_per_s']:.2f}x (vs {best})"
        lines.append(f"| {label} | {cell(lam, 'tokens_per_s', '.1f')} | {cell(r[work]['f32'], 'tokens_per_s', '.1f')} "
                     f"| {cell(r[work]['bf16'], 'tokens_per_s', '.1f')} | {ratio} |")
    for work, label in rows:
        lam, best = r[work]["lamina"], faster(work)
        ratio = "-"
        if isinstance(lam, dict) and best:
            ratio = f"{lam['peak_rss_mib'] / r[work][best]['peak_rss_mib']:.2f}x (vs {best})"
        lines.append(f"| peak RSS (MiB), {work} | {cell(lam, 'peak_rss_mib', '.0f')} | {cell(r[work]['f32'], 'peak_rss_mib', '.0f')} "
                     f"| {cell(r[work]['bf16'], 'peak_rss_mib', '.0f')} | {ratio} |")
    if s["rounds"] > 1:
        lines += ["", "per round (the sides of a workload ran back to back, so one round's ratio compares like conditions):"]
        for work, label in rows:
            ratios = round_ratios(report["per_round"][work])
            if ratios:
                shown = ", ".join(f"{x:.2f}x" for x in ratios)
                lines.append(f"- {label}: lamina / that round's faster PyTorch mode {shown}; median {statistics.median(ratios):.2f}x")
    m = report["model"]
    lines += [
        "",
        f"model file: {m['gguf']} ({m['gguf_mib']:.1f} MiB); model file + 1 GiB = {m['gguf_mib'] + 1024:.1f} MiB",
        f"PyTorch loads {m['hf_dir']} (lamina's f32 safetensors conversion, {m['hf_mib']:.1f} MiB)",
        "",
        "notes:",
        "- lamina runs the GGUF file (weights mapped in their stored type and dequantized tile by tile,",
        "  or, for inference on the bf16 path, packed once into the kernel's bf16 panels; products in the",
        "  precision it picks for the CPU, named below); PyTorch runs the same weights converted to f32.",
        "  Same threads on both sides.",
        f"- forward: median of {s['reps']} runs after a warm-up on both sides; lamina's is `lamina bench-native",
        "  --forward-only`, which tokenizes its own built-in prose (same token count), recycles each pass's",
        "  logits buffer into the next, and runs nothing else in its process.",
        f"- training: {s['steps']} optimizer step(s) timed after one warm-up step. lamina: two `lamina finetune`",
        f"  runs, {lamina_timing(r)} (model load and adapter export cancel out);",
        "  PyTorch: the same steps timed in-process. AdamW, lr 1e-4, no weight decay, gradient clipping 1.0.",
        "- each cell is a fresh process; peak RSS is that process's own maximum resident set (wait4).",
        f"- {s['rounds']} round(s), the three sides of a workload back to back; each cell is its best round"
        " (tok/s) and the largest peak RSS of its rounds.",
    ]
    bn = r["forward"]["lamina"]
    if isinstance(bn, dict) and "bench_native" in bn:
        d = bn["bench_native"]
        if d.get("kernel_path"):
            lines.append(f"- native kernels: {d['kernel_path']}")
    losses = [(name, r["lora"][name].get("first_loss")) for name in ("lamina", "f32", "bf16") if isinstance(r["lora"][name], dict)]
    if any(v is not None for _, v in losses):
        lines.append("- LoRA first-step loss (a check that both sides train the same model; lamina shuffles its batches): "
                     + ", ".join(f"{n} {v:.3f}" for n, v in losses if v is not None))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="lamina's native engine against PyTorch (+ transformers + peft) on the same CPU work. "
        "Run it through scripts/bench-vs-pytorch.sh, which prepares the virtual environment.")
    p.add_argument("--model", type=Path, help="GGUF model [default: $LAMINA_MODEL, else the cached default model]")
    p.add_argument("--lamina", help="lamina binary [default: $LAMINA_BIN, else target/release/lamina]")
    p.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="text to cut into records [default: %(default)s]")
    p.add_argument("--threads", type=int, default=2, help="threads on both sides [default: %(default)s]")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps after the warm-up step [default: 3]")
    p.add_argument("--reps", type=int, default=None, help="timed forward passes after the warm-up (median) [default: 5]")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence [default: 256]")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per training step [default: 4]")
    p.add_argument("--quick", action="store_true", help="tiny settings (1 x 32 forward, 2 x 32 training, 1 step, 1 rep): checks that everything runs")
    p.add_argument("--rounds", type=int, default=1, help="repeat every measurement this many times, the three sides of one workload "
                   "back to back, and keep each cell's best round: on a shared machine the best is the least disturbed [default: %(default)s]")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per process before it counts as failed [default: %(default)s]")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    # Internal: one PyTorch measurement in a fresh process.
    p.add_argument("--worker", choices=["forward", "lora", "full"], help=argparse.SUPPRESS)
    p.add_argument("--dtype", choices=["f32", "bf16"], help=argparse.SUPPRESS)
    p.add_argument("--hf-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--ids", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    for name, normal, tiny in (("steps", 3, 1), ("reps", 5, 1), ("seq_len", 256, 32), ("batch_size", 4, 2)):
        if getattr(args, name) is None:
            setattr(args, name, tiny if quick else normal)
    if args.threads < 1 or args.steps < 1 or args.reps < 1 or args.seq_len < 2 or args.batch_size < 1 or args.rounds < 1:
        p.error("--threads, --steps, --reps, --batch-size and --rounds must be at least 1, --seq-len at least 2")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    lamina = lamina_binary(args.lamina)
    gguf = args.model or (Path(os.environ["LAMINA_MODEL"]) if os.environ.get("LAMINA_MODEL") else CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not gguf.is_file():
        sys.exit(f"bench-vs-pytorch: model {gguf} not found (scripts/fetch-model.sh fetches the default one)")
    missing = [p for p in ("torch", "transformers", "peft", "safetensors") if version_of(p) is None]
    if missing:
        sys.exit(f"bench-vs-pytorch: {', '.join(missing)} not installed in {sys.executable}; run scripts/bench-vs-pytorch.sh, which installs them")
    if not args.text.is_file():
        sys.exit(f"bench-vs-pytorch: text {args.text} not found (give another with --text)")

    load_before = load_average()
    hf_dir = converted_model(lamina, gguf, args.timeout)
    records, ids = make_records(hf_dir, args.text, args.seq_len)
    log(f"{len(records)} records of {args.seq_len} tokens from {args.text}; {args.threads} threads, "
        f"{args.steps} timed step(s), {args.reps} forward rep(s)")

    results = {w: {"lamina": "failed", "f32": "failed", "bf16": "failed"} for w in ("forward", "lora", "full")}
    # Every round's tok/s (None where it failed), for the per-round ratios.
    per_round = {w: {"lamina": [], "f32": [], "bf16": []} for w in ("forward", "lora", "full")}
    with tempfile.TemporaryDirectory(prefix="lamina-bench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "records.jsonl"
        data.write_text("".join(json.dumps({"text": t}) + "\n" for t in records))
        ids_file = tmp / "ids.json"
        ids_file.write_text(json.dumps(ids))
        has_full = lamina_has_full(lamina)

        def measure(work, side, fn):
            log(f"{work}: {side} ...")
            per_round[work][side].append(None)
            try:
                r = fn()
                log(f"{work}: {side}: {r['tokens_per_s']:.1f} tok/s, peak RSS {r['peak_rss_mib']:.0f} MiB")
                per_round[work][side][-1] = r["tokens_per_s"]
                best = results[work][side]
                if isinstance(best, dict):
                    # The fastest round's numbers, and the largest peak RSS seen in any round.
                    rss = max(best["peak_rss_mib"], r["peak_rss_mib"])
                    r = r if r["tokens_per_s"] > best["tokens_per_s"] else best
                    r = {**r, "peak_rss_mib": rss}
                results[work][side] = r
            except Failure as e:
                if work == "full" and side == "lamina" and "unexpected argument '--full'" in str(e):
                    results[work][side] = REJECTED_FULL  # listed in --help but not accepted
                    return
                print(f"bench-vs-pytorch: {work} ({side}) failed: {e}", file=sys.stderr, flush=True)
            except (ValueError, KeyError, TypeError) as e:  # output in an unexpected shape
                print(f"bench-vs-pytorch: {work} ({side}) failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

        lora_args = ["--rank", str(LORA_RANK), "--alpha", str(LORA_ALPHA), "--dropout", "0", "--targets", TARGETS_LAMINA]
        lamina_work = {
            "forward": lambda: lamina_forward(args, lamina, gguf),
            "lora": lambda: lamina_train(args, lamina, gguf, data, tmp, lora_args),
            "full": lambda: lamina_train(args, lamina, gguf, data, tmp, ["--full"]),
        }
        # The sides of one workload run back to back, so that they meet similar conditions.
        for round_ in range(args.rounds):
            if args.rounds > 1:
                log(f"round {round_ + 1} of {args.rounds}")
            for work in ("forward", "lora", "full"):
                if work != "full" or (has_full and results["full"]["lamina"] not in (REJECTED_FULL, NO_FULL)):
                    measure(work, "lamina", lamina_work[work])
                if work == "full" and (not has_full or results["full"]["lamina"] == REJECTED_FULL):
                    results["full"]["lamina"] = NO_FULL
                    log(f"full: lamina: {NO_FULL}")
                for dtype in ("f32", "bf16"):
                    measure(work, dtype, lambda: pytorch(args, work, dtype, hf_dir, ids_file))

    report = {
        "cpu": cpu_info(),
        "versions": {p: version_of(p) for p in ("torch", "transformers", "peft", "safetensors")},
        "settings": {"threads": args.threads, "steps": args.steps, "reps": args.reps, "rounds": args.rounds, "seq_len": args.seq_len,
                     "batch_size": args.batch_size, "lora_rank": LORA_RANK, "lora_alpha": LORA_ALPHA,
                     "lora_targets": TARGETS_HF, "learning_rate": LEARNING_RATE, "max_grad_norm": MAX_GRAD_NORM,
                     "text": str(args.text), "records": len(records), "quick": args.quick},
        "model": {"gguf": str(gguf), "gguf_mib": gguf.stat().st_size / 2**20, "hf_dir": str(hf_dir),
                  "hf_mib": sum(f.stat().st_size for f in hf_dir.iterdir() if f.is_file()) / 2**20},
        "lamina": str(lamina),
        "load_average_before": load_before,
        "results": results,
        "per_round": per_round,
    }
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
