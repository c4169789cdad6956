#!/usr/bin/env python3
"""Check `lamina pretrain` against a PyTorch reference: the same model, initial weights, data
order and hyper-parameters, trained step by step in both, their per-step losses compared.

Run through scripts/pretrain-reference.sh, which prepares the virtual environment (torch,
transformers, safetensors) and checks that the release binary exists.

1. lamina prepares a corpus of a text file (`lamina corpus`), trains a small tokenizer on it
   (`lamina tokenizer train`) and pretrains a tiny model from scratch (`lamina pretrain`) in
   f32, writing its initial weights (init/, a Hugging Face directory), the per-step losses
   (log.json) and the token ids each optimizer step trained on (--dump-batches).
2. PyTorch loads init/ with transformers' LlamaForCausalLM and trains it on exactly those
   batches, as lamina defines a step: the loss is the summed next-token NLL of every target
   (every token of a sequence but its first) over the step's micro-batches, divided by the
   step's number of targets; the gradient's global norm is clipped to --max-grad-norm
   (scaled by max/norm when above it); AdamW (torch.optim.AdamW) with decoupled weight decay
   on every tensor but the norms and the token embedding (a tied LM head is the embedding;
   an untied one is decayed), unless --decay-norms-and-embeddings; the learning rate of
   step s (0-based) is lr*(s+1)/warmup during the warmup, then cosine (or linear, constant)
   down to the last step.
3. The losses are printed side by side (steps 1-10, then every 10th) with their relative
   difference; the exit status is 1 when a step of the first --check-steps differs by more
   than --tolerance.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", default=None, help="text file of the corpus (default: /usr/share/common-licenses/GPL-3, else README.md)")
    p.add_argument("--work", default=None, help="working directory (default: a temporary one, removed at the end)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=160)
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--untied", action="store_true", help="a separate LM head (default: tied to the embedding)")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--decay-norms-and-embeddings", action="store_true")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--schedule", default="cosine", choices=["cosine", "linear", "constant"])
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--check-steps", type=int, default=100, help="steps whose losses must agree (default: 100)")
    p.add_argument("--tolerance", type=float, default=0.01, help="largest relative difference allowed (default: 0.01)")
    p.add_argument("--lamina", default=os.environ.get("LAMINA_BIN", "target/release/lamina"))
    return p.parse_args()


def run(cmd):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def lr_at(args, step):
    """The learning rate of optimizer step `step` (0-based), as lamina's schedule gives it."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    decay_steps = max(args.steps - args.warmup, 1)
    progress = min((step - args.warmup) / decay_steps, 1.0)
    if args.schedule == "constant":
        return args.lr
    if args.schedule == "linear":
        return args.lr * (1.0 - progress)
    return args.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_lamina(args, work):
    text = args.text
    if text is None:
        gpl = "/usr/share/common-licenses/GPL-3"
        text = gpl if os.path.isfile(gpl) else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
    corpus, tok, out = (os.path.join(work, d) for d in ("corpus", "tokenizer", "run"))
    dump = os.path.join(work, "batches.jsonl")
    run([args.lamina, "corpus", "-i", text, "-o", corpus])
    run([args.lamina, "tokenizer", "train", "-i", os.path.join(corpus, "train.jsonl"), "-o", tok, "--vocab-size", str(args.vocab_size)])
    cmd = [args.lamina, "pretrain", "--corpus", corpus, "--tokenizer", tok, "-o", out, "--dump-batches", dump]
    cmd += ["--layers", str(args.layers), "--width", str(args.width), "--heads", str(args.heads), "--kv-heads", str(args.kv_heads)]
    cmd += ["--ffn", str(args.ffn), "--ctx", str(args.ctx), "--untied" if args.untied else "--tied"]
    cmd += ["--steps", str(args.steps), "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size)]
    cmd += ["--grad-accum", str(args.grad_accum), "--lr", repr(args.lr), "--beta1", repr(args.beta1), "--beta2", repr(args.beta2)]
    cmd += ["--eps", repr(args.eps), "--weight-decay", repr(args.weight_decay), "--warmup", str(args.warmup)]
    cmd += ["--schedule", args.schedule, "--max-grad-norm", repr(args.max_grad_norm), "--seed", str(args.seed)]
    cmd += ["--eval-every", "0", "--threads", str(args.threads), "--precision", "f32"]
    if args.decay_norms_and_embeddings:
        cmd.append("--decay-norms-and-embeddings")
    start = time.time()
    run(cmd)
    seconds = time.time() - start
    with open(os.path.join(out, "log.json")) as f:
        log = json.load(f)
    with open(dump) as f:
        batches = [json.loads(line) for line in f]
    return os.path.join(out, "init"), log["steps"], batches, seconds


def train_pytorch(args, init, batches):
    import torch
    import torch.nn.functional as F
    from transformers import LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    model = LlamaForCausalLM.from_pretrained(init, torch_dtype=torch.float32, attn_implementation="eager")
    model.train()
    # named_parameters lists a tied LM head once, as the embedding.
    decay, exempt = [], []
    for name, p in model.named_parameters():
        no_decay = not args.decay_norms_and_embeddings and ("embed_tokens" in name or "norm" in name)
        (exempt if no_decay else decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": exempt, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, foreach=False)
    params = [p for g in groups for p in g["params"]]
    records = []
    start = time.time()
    for record in batches:
        micro = [torch.tensor(b, dtype=torch.long) for b in record["batches"]]
        n_targets = sum(ids.shape[0] * (ids.shape[1] - 1) for ids in micro)
        opt.zero_grad(set_to_none=True)
        nll = 0.0
        for ids in micro:
            logits = model(input_ids=ids).logits
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
            (loss / n_targets).backward()
            nll += loss.item()
        norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None))
        if args.max_grad_norm > 0 and norm > args.max_grad_norm:
            scale = args.max_grad_norm / norm
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(scale)
        lr = lr_at(args, record["step"] - 1)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        records.append({"step": record["step"], "loss": nll / n_targets, "learning_rate": lr, "grad_norm": norm})
    return records, time.time() - start


def main():
    args = parse_args()
    work = args.work or tempfile.mkdtemp(prefix="lamina-pretrain-reference-")
    os.makedirs(work, exist_ok=True)
    try:
        init, lamina_steps, batches, lamina_seconds = train_lamina(args, work)
        print(f"lamina: {len(lamina_steps)} steps in {lamina_seconds:.1f} s", file=sys.stderr, flush=True)
        torch_steps, torch_seconds = train_pytorch(args, init, batches)
        print(f"PyTorch: {len(torch_steps)} steps in {torch_seconds:.1f} s", file=sys.stderr, flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    if len(lamina_steps) != len(torch_steps):
        print(f"lamina logged {len(lamina_steps)} steps but dumped {len(torch_steps)} batches", file=sys.stderr)
        return 1
    tokens = args.batch_size * args.grad_accum * args.seq_len
    print(f"model: {args.layers} layers, width {args.width}, {args.heads} heads ({args.kv_heads} KV), FFN {args.ffn}, "
          f"vocabulary {args.vocab_size}, {'untied' if args.untied else 'tied'}; {args.steps} steps of {tokens} tokens, "
          f"lr {args.lr:g}, warmup {args.warmup}, {args.schedule}, f32")
    print(f"{'step':>5} {'lamina':>10} {'PyTorch':>10} {'rel diff':>10} {'lr lamina':>10} {'lr torch':>10} {'norm lamina':>11} {'norm torch':>10}")
    rel = []
    lr_mismatch = []
    for a, b in zip(lamina_steps, torch_steps):
        r = abs(a["loss"] - b["loss"]) / abs(b["loss"])
        rel.append((r, a["step"]))
        if abs(a["learning_rate"] - b["learning_rate"]) > 1e-6 * args.lr + 1e-12:
            lr_mismatch.append(a["step"])
        if a["step"] <= 10 or a["step"] % 10 == 0:
            print(f"{a['step']:>5} {a['loss']:>10.5f} {b['loss']:>10.5f} {r:>10.2e} {a['learning_rate']:>10.3e} "
                  f"{b['learning_rate']:>10.3e} {a['grad_norm']:>11.4f} {b['grad_norm']:>10.4f}")
    first = [x for x in rel if x[1] <= args.check_steps]
    worst_first, worst_all = max(first), max(rel)
    print(f"max relative difference, steps 1-{min(args.check_steps, len(rel))}: {worst_first[0]:.2e} (step {worst_first[1]})")
    print(f"max relative difference, all {len(rel)} steps: {worst_all[0]:.2e} (step {worst_all[1]})")
    print(f"time: lamina pretrain {lamina_seconds:.1f} s (the whole command), PyTorch training {torch_seconds:.1f} s")
    if lr_mismatch:
        print(f"the learning rates differ from step {lr_mismatch[0]} on: the schedule is not replicated", file=sys.stderr)
        return 1
    if worst_first[0] > args.tolerance:
        print(f"FAIL: step {worst_first[1]} differs by {worst_first[0]:.2e}, more than {args.tolerance:g}", file=sys.stderr)
        return 1
    print(f"OK: the first {len(first)} steps agree within {args.tolerance:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
