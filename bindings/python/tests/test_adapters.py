"""LoRA adapters through the Python binding: the adapters are written here with struct packing
(a minimal GGUF LoRA file, and a PEFT directory with a hand-written safetensors file), applied
to the default model (SmolLM2-135M: 30 layers, n_embd 576, n_ff 1536). Numerical agreement
with a dense reference is tested in the runtime's own tests; here: scale 0 is the base model,
an adapter changes the greedy text, a set of two applies, a PEFT directory equals its GGUF
twin, and bad input raises the specific error while the session keeps working."""

import json
import math
import os
import random
import struct
import sys
from pathlib import Path

import pytest

# LAMINA_TEST_INSTALLED=1: test the installed package instead of this checkout's (conftest.py).
if os.environ.get("LAMINA_TEST_INSTALLED") != "1":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lamina  # noqa: E402

N_LAYER, N_EMBD, N_FF, RANK = 30, 576, 1536, 4
PROMPT = "The quick brown fox jumps over the lazy dog. Paris is the capital of"
SESSION_KW = dict(n_ctx=256, n_threads=1)


def _gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf_adapter(path, tensors, alpha=8.0, alpha_type="f32"):
    """tensors: list of (name, ne0, ne1, list of float). F32 data, 32-byte alignment."""
    kv = [
        ("general.architecture", "llama"),
        ("general.type", "adapter"),
        ("adapter.type", "lora"),
    ]
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv) + 1))
    for k, v in kv:
        out += _gguf_str(k) + struct.pack("<I", 8) + _gguf_str(v)
    out += _gguf_str("adapter.lora.alpha")
    out += struct.pack("<If", 6, alpha) if alpha_type == "f32" else struct.pack("<II", 4, int(alpha))
    offset = 0
    for name, ne0, ne1, _ in tensors:
        out += _gguf_str(name) + struct.pack("<IqqIQ", 2, ne0, ne1, 0, offset)
        offset += (ne0 * ne1 * 4 + 31) // 32 * 32
    out += b"\0" * (-len(out) % 32)
    for _, ne0, ne1, data in tensors:
        blob = struct.pack("<%df" % len(data), *data)
        out += blob + b"\0" * (-len(blob) % 32)
    Path(path).write_bytes(bytes(out))


def random_lora(seed, targets=(("attn_v", 192), ("ffn_up", N_FF))):
    """{(layer, target): (a [RANK x N_EMBD], b [n_out x RANK])} as flat lists."""
    rng = random.Random(seed)
    out = {}
    for layer in range(N_LAYER):
        for target, n_out in targets:
            a = [rng.uniform(-0.08, 0.08) for _ in range(RANK * N_EMBD)]
            b = [rng.uniform(-0.08, 0.08) for _ in range(n_out * RANK)]
            out[(layer, target, n_out)] = (a, b)
    return out


def gguf_tensors(lora):
    tensors = []
    for (layer, target, n_out), (a, b) in lora.items():
        tensors.append(("blk.%d.%s.weight.lora_a" % (layer, target), N_EMBD, RANK, a))
        tensors.append(("blk.%d.%s.weight.lora_b" % (layer, target), RANK, n_out, b))
    return tensors


HF = {"attn_v": "self_attn.v_proj", "ffn_up": "mlp.up_proj"}


def write_peft(directory, lora, alpha=8.0):
    """A PEFT directory for the same weights (v and up need no RoPE row permutation)."""
    os.makedirs(directory, exist_ok=True)
    header, blobs, offset = {}, [], 0
    for (layer, target, n_out), (a, b) in lora.items():
        module = "base_model.model.model.layers.%d.%s" % (layer, HF[target])
        for suffix, data, shape in ((".lora_A.weight", a, [RANK, N_EMBD]), (".lora_B.weight", b, [n_out, RANK])):
            blob = struct.pack("<%df" % len(data), *data)
            header[module + suffix] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
            blobs.append(blob)
            offset += len(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(os.path.join(directory, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    config = {"peft_type": "LORA", "r": RANK, "lora_alpha": alpha, "target_modules": ["v_proj", "up_proj"]}
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        json.dump(config, f)


# `model`: the shared fixture of conftest.py.


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapters")
    lora1, lora2 = random_lora(1), random_lora(2)
    write_gguf_adapter(d / "a1.gguf", gguf_tensors(lora1))
    write_gguf_adapter(d / "a2.gguf", gguf_tensors(lora2))
    write_peft(d / "peft1", lora1)
    return d


def greedy(session):
    session.reset()
    return session.generate(PROMPT, max_tokens=16).text


def test_scale_zero_adapter_set_and_peft(model, files):
    a1 = model.load_adapter(files / "a1.gguf")
    a2 = model.load_adapter(str(files / "a2.gguf"))
    assert (a1.rank, a1.alpha) == (RANK, 8.0)
    with model.session(**SESSION_KW) as s:
        base = greedy(s)
        s.set_adapters([(a1, 0.0)])
        assert greedy(s) == base
        s.set_adapters([a1])
        adapted = greedy(s)
        assert adapted != base
        s.set_adapters([(a1, 0.7), (a2, -0.5)])
        assert len(s.adapters) == 2
        merged = greedy(s)
        print("base {!r}\nadapted {!r}\nmerged {!r}".format(base, adapted, merged))
        peft = model.load_adapter(files / "peft1")
        s.set_adapters([(peft, 1.0)])
        assert greedy(s) == adapted
        s.set_adapters([])
        assert s.adapters == []
        assert greedy(s) == base


def test_bad_adapters_raise_specific_errors(model, files, tmp_path):
    with pytest.raises(lamina.LaminaIOError, match="missing.gguf"):
        model.load_adapter(tmp_path / "missing.gguf")
    (tmp_path / "text.gguf").write_text("not a gguf")
    with pytest.raises(lamina.DataError, match="not a GGUF"):
        model.load_adapter(tmp_path / "text.gguf")
    with pytest.raises(lamina.DataError, match="not a LoRA adapter"):
        model.load_adapter(lamina.default_model_path())
    one = gguf_tensors({k: v for k, v in random_lora(3).items() if k[0] == 0})
    write_gguf_adapter(tmp_path / "u32.gguf", one, alpha_type="u32")
    with pytest.raises(lamina.DataError, match="adapter.lora.alpha is a u32"):
        model.load_adapter(tmp_path / "u32.gguf")
    write_gguf_adapter(tmp_path / "no-b.gguf", [t for t in one if not t[0].endswith("lora_b")])
    with pytest.raises(lamina.DataError, match="lora_b"):
        model.load_adapter(tmp_path / "no-b.gguf")
    bad_target = [(name.replace("blk.0.", "blk.99."), n0, n1, d) for name, n0, n1, d in one]
    write_gguf_adapter(tmp_path / "target.gguf", bad_target)
    with pytest.raises(lamina.DataError, match="does not exist in the model"):
        model.load_adapter(tmp_path / "target.gguf")
    bad_shape = [(name, n0, n1, d) if "lora_a" in name else (name, n0, n1 // 2, d[: len(d) // 2]) for name, n0, n1, d in one]
    write_gguf_adapter(tmp_path / "shape.gguf", bad_shape)
    with pytest.raises(lamina.DataError, match="shape mismatch"):
        model.load_adapter(tmp_path / "shape.gguf")
    (tmp_path / "peft").mkdir()
    with pytest.raises(lamina.DataError, match="adapter_config.json"):
        model.load_adapter(tmp_path / "peft")

    a1 = model.load_adapter(files / "a1.gguf")
    with lamina.Model(lamina.default_model_path()) as other, model.session(**SESSION_KW) as s:
        foreign = other.load_adapter(files / "a1.gguf")
        base = greedy(s)
        with pytest.raises(lamina.InvalidArgumentError, match="another model"):
            s.set_adapters([(foreign, 1.0)])
        with pytest.raises(lamina.InvalidArgumentError, match="NaN"):
            s.set_adapters([(a1, math.nan)])
        with pytest.raises(TypeError):
            s.set_adapters(["a1.gguf"])
        a2 = model.load_adapter(files / "a2.gguf")
        a2.close()
        with pytest.raises(lamina.LaminaError):
            s.set_adapters([a2])
        assert s.adapters == []
        assert greedy(s) == base
