"""LoRA training through the Python binding, on a tiny budget (rank 2 on q and v, two
sequences per step, a few steps) on tests/data/made_up_facts.jsonl with the default model:
the contract, not what the adapter learns. Covered: progress reports, stopping by returning
False and by cancel() from another thread, an exception in the callback, step/evaluate,
checkpoint and resume, GGUF and PEFT adapters that Model.load_adapter reads, a run that
diverges, bad options."""

import math
import os
import sys
import threading
from pathlib import Path

import pytest

# LAMINA_TEST_INSTALLED=1: test the installed package instead of this checkout's (conftest.py).
if os.environ.get("LAMINA_TEST_INSTALLED") != "1":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lamina  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "made_up_facts.jsonl"
TINY = dict(rank=2, alpha=4.0, targets="q,v", batch_size=2, max_len=256, val_fraction=0.1, learning_rate=3e-3)


def test_run_stop_step_evaluate_save_and_resume(tmp_path):
    with lamina.Trainer(None, DATA, steps=3, **TINY) as trainer:
        assert trainer.steps() == (0, 3)
        before = trainer.evaluate()
        assert before is not None and math.isfinite(before) and before > 0

        seen = []

        def stop_after_first(p):
            seen.append(p)
            return False

        assert trainer.run(stop_after_first) is False
        assert len(seen) == 1 and trainer.steps() == (1, 3)
        p = seen[0]
        assert isinstance(p, lamina.TrainProgress)
        assert p.step == 1 and p.total_steps == 3 and p.loss > 0 and p.tokens_per_second > 0
        assert p.val_loss is None

        ckpt = tmp_path / "checkpoint"
        assert trainer.run(lambda p: seen.append(p), checkpoint_dir=ckpt) is True
        assert [p.step for p in seen] == [1, 2, 3]
        assert seen[-1].val_loss is not None  # computed at the last step
        assert (ckpt / "checkpoint-00000003.safetensors").is_file()
        assert trainer.run() is True  # nothing left to do

        loss = trainer.step()
        assert math.isfinite(loss) and loss > 0
        assert trainer.steps() == (4, 3)

        gguf, peft = tmp_path / "facts.gguf", tmp_path / "facts-peft"
        trainer.save_adapter(gguf)
        trainer.save_adapter(peft, format="peft")
        assert gguf.is_file()
        assert (peft / "adapter_config.json").is_file() and (peft / "adapter_model.safetensors").is_file()
        with pytest.raises(lamina.InvalidArgumentError):
            trainer.save_adapter(gguf, format="onnx")
        trainer.save_checkpoint(tmp_path / "checkpoint-4")

    assert trainer.closed
    with pytest.raises(lamina.InvalidHandleError):
        trainer.step()

    with lamina.Model() as model:
        with model.load_adapter(gguf) as adapter:
            assert adapter.rank == 2
        model.load_adapter(peft).close()

    # Resume at step 3 with the total raised to 5; the data options must match.
    with lamina.Trainer.resume(ckpt, None, DATA, steps=5, **{k: v for k, v in TINY.items() if k in ("max_len", "val_fraction")}) as r:
        assert r.steps() == (3, 5)
        assert r.run() is True and r.steps() == (5, 5)
    with pytest.raises(lamina.DataError, match="27 examples"):
        lamina.Trainer.resume(ckpt, None, DATA)  # val_fraction 0: 30 examples


def test_cancel_from_another_thread_and_callback_errors():
    with lamina.Trainer(None, DATA, steps=1000, **TINY) as trainer:
        first = threading.Event()
        canceller = threading.Thread(target=lambda: (first.wait(60), trainer.cancel()))
        canceller.start()
        assert trainer.run(lambda p: first.set()) is False
        canceller.join()
        done, total = trainer.steps()
        assert 1 <= done <= 3 and total == 1000

        def boom(p):
            raise RuntimeError("from the callback")

        with pytest.raises(RuntimeError, match="from the callback"):
            trainer.run(boom)
        assert trainer.steps()[0] == done + 1


def test_a_diverging_run_stops_with_a_clear_error_and_the_trainer_keeps_working(tmp_path):
    """A learning rate that overflows the weights: run() raises InvalidArgumentError naming the
    step and the last good checkpoint, the non-finite update is not applied, and the trainer
    still saves an adapter (of the last good step) that llama.cpp loads."""
    options = dict(TINY, targets="q,k,v,o,gate,up,down", learning_rate=1e30, warmup_steps=0, val_fraction=0.0, checkpoint_every=1)
    with lamina.Trainer(None, DATA, steps=20, **options) as trainer:
        ckpt = tmp_path / "ckpt"
        with pytest.raises(lamina.InvalidArgumentError, match=r"diverged at step \d+ .*last good checkpoint is .*checkpoint-0000000\d\.safetensors"):
            trainer.run(checkpoint_dir=ckpt)
        done, _ = trainer.steps()
        assert 2 <= done < 20
        assert not (ckpt / f"checkpoint-{done:08d}.safetensors").exists()
        gguf = tmp_path / "last-good.gguf"
        trainer.save_adapter(gguf)
    with lamina.Model() as model, model.load_adapter(gguf) as adapter:
        assert adapter.rank == 2


def test_bad_options(tmp_path):
    with pytest.raises(lamina.InvalidArgumentError, match="rank"):
        lamina.Trainer(None, DATA, rank=0)
    with pytest.raises(lamina.InvalidArgumentError, match="`x`"):
        lamina.Trainer(None, DATA, targets=["q", "x"])
    with pytest.raises(lamina.InvalidArgumentError, match="schedule"):
        lamina.Trainer(None, DATA, schedule="exponential")
    with pytest.raises(lamina.InvalidArgumentError, match="val_fraction"):
        lamina.Trainer(None, DATA, val_fraction=1.0)
    with pytest.raises(lamina.InvalidArgumentError):
        lamina.Trainer(None, DATA, steps=-1)
    with pytest.raises(TypeError, match="unknown training option"):
        lamina.Trainer(None, DATA, lr=1e-3)
    with pytest.raises(TypeError):
        lamina.Trainer(None, DATA, pack=1)
    with pytest.raises(lamina.DataError, match="file not found"):
        lamina.Trainer(None, tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Q", "completion": "A"}\n{"prompt": 3}\n')
    with pytest.raises(lamina.DataError, match="bad.jsonl:2:"):
        lamina.Trainer(None, bad)
    with pytest.raises(lamina.ModelNotFoundError):
        lamina.Trainer(tmp_path / "missing.gguf", DATA)
    with pytest.raises(lamina.LaminaIOError):
        lamina.Trainer.resume(tmp_path / "no-checkpoint", None, DATA)


def test_full_fine_tune_saves_a_model_llama_cpp_loads(tmp_path):
    # Every weight trained (a 2-step run on 2 sequences): the loss of the second step is on the
    # weights the first step changed, and the saved GGUF is a model, not an adapter.
    with lamina.Trainer(None, DATA, full=True, steps=2, batch_size=2, learning_rate=1e-5, warmup_steps=0, n_threads=2) as t:
        t.run()
        assert t.steps() == (2, 2)
        with pytest.raises(lamina.InvalidArgumentError, match="save_model"):
            t.save_adapter(tmp_path / "adapter.gguf")
        out = tmp_path / "full.gguf"
        t.save_model(out)
    assert out.stat().st_size > 400_000_000  # 134.5 M parameters in F32
    with lamina.Model(out) as m, m.session(n_ctx=256) as s:
        g = s.generate("The capital of France is", max_tokens=4)
        assert g.generated_tokens > 0, "the fine-tuned model generates"
    with lamina.Trainer(None, DATA, steps=1) as lora_trainer:
        with pytest.raises(lamina.InvalidArgumentError, match="save_adapter"):
            lora_trainer.save_model(tmp_path / "model.gguf")
