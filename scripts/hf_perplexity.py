#!/usr/bin/env python3
"""Perplexity of a Hugging Face model directory on a text file with transformers, computed as
`lamina perplexity` computes it (llama.cpp's llama-perplexity method): the text tokenized once
without special tokens, cut into non-overlapping chunks of --chunk tokens (a partial last chunk
dropped), each chunk evaluated from an empty context with its first token replaced by BOS when
the tokenizer adds one, and the tokens from chunk/2 + 1 to the end of each chunk scored.

    python3 scripts/hf_perplexity.py HF_DIR TEXT_FILE [--chunk 256] [--threads 2]

Prints one line: `ppl P over N tokens in C chunks`. Needs torch and transformers (the
environment scripts/torch-venv.sh creates has both)."""

import argparse
import math
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("text")
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    tok.model_max_length = 1 << 30  # the whole text is tokenized at once, then cut into chunks
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    model.eval()
    with open(args.text, encoding="utf-8") as f:
        ids = tok(f.read(), add_special_tokens=False)["input_ids"]
    n = args.chunk
    chunks = len(ids) // n
    if chunks < 2:
        sys.exit(f"hf_perplexity: {len(ids)} tokens; chunks of {n} need at least {2 * n}")
    bos = tok.bos_token_id if getattr(tok, "add_bos_token", False) else None
    first = n // 2
    nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(chunks):
            chunk = ids[i * n:(i + 1) * n]
            if bos is not None:
                chunk[0] = bos
            logits = model(torch.tensor([chunk])).logits[0].double()
            logprobs = torch.log_softmax(logits, dim=-1)
            # Rows first..n-2 predict tokens first+1..n-1.
            for row in range(first, n - 1):
                nll -= logprobs[row, chunk[row + 1]].item()
                count += 1
    print(f"ppl {math.exp(nll / count):.4f} over {count} tokens in {chunks} chunks")


if __name__ == "__main__":
    main()
