"""The generic loop and checkpoints: atomic, code-free, resumable after Ctrl-C."""

from __future__ import annotations

import pytest
import torch

from grukit.training import LoopConfig, fit, load_tensors, read_json, save_tensors
from grukit.training.checkpoint import atomic_write_bytes, load_training_state, save_training_state


class Regression:
    """y = 3x - 1 with a linear model; raises KeyboardInterrupt at a chosen epoch."""

    monitor, mode = "val_loss", "min"

    def __init__(self, interrupt_at=None):
        self.interrupt_at = interrupt_at
        x = torch.linspace(-1, 1, 64).unsqueeze(1)
        self.data = (x, 3 * x - 1)

    def batches(self, epoch, gen):
        if epoch == self.interrupt_at:
            raise KeyboardInterrupt
        perm = torch.randperm(64, generator=gen)
        x, y = self.data
        return [(x[perm[i : i + 16]], y[perm[i : i + 16]]) for i in range(0, 64, 16)]

    def loss(self, model, batch):
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1])

    def validate(self, model):
        return {"val_loss": self.loss(model, self.data).item()}


def test_fit_learns_and_keeps_best(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    history = fit(model, Regression(), LoopConfig(epochs=30, lr=0.1, progress=False), tmp_path)
    assert history[-1]["val_loss"] < 1e-3
    best = min(r["val_loss"] for r in history)
    assert Regression().validate(model)["val_loss"] == pytest.approx(best, rel=1e-5)
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_loss_plot_is_drawn_once_and_on_interrupt(tmp_path, monkeypatch):
    from grukit.training import loop

    calls = []
    real = loop.plot_history
    monkeypatch.setattr(loop, "plot_history", lambda *a, **k: (calls.append(len(a[0])), real(*a, **k)))
    fit(torch.nn.Linear(1, 1), Regression(), LoopConfig(epochs=5, lr=0.05, progress=False), tmp_path / "a")
    assert calls == [5] and (tmp_path / "a" / "loss.png").stat().st_size > 1000
    with pytest.raises(KeyboardInterrupt):
        fit(
            torch.nn.Linear(1, 1),
            Regression(interrupt_at=2),
            LoopConfig(epochs=5, lr=0.05, progress=False),
            tmp_path / "b",
        )
    assert calls == [5, 2] and (tmp_path / "b" / "loss.png").exists()


def test_interrupt_leaves_usable_checkpoint_and_resume_matches(tmp_path):
    cfg = LoopConfig(epochs=6, lr=0.05, progress=False)
    torch.manual_seed(0)
    straight = fit(torch.nn.Linear(1, 1), Regression(), cfg, tmp_path / "a")
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(model, Regression(interrupt_at=3), cfg, tmp_path / "b")
    weights, _ = load_tensors(tmp_path / "b" / "model.safetensors")
    assert set(weights) == {"weight", "bias"}
    resumed = fit(torch.nn.Linear(1, 1), Regression(), cfg, tmp_path / "b", resume=True)
    assert [r["train_loss"] for r in resumed] == pytest.approx([r["train_loss"] for r in straight], rel=1e-6)


def test_early_stopping(tmp_path):
    class Flat(Regression):
        def validate(self, model):
            return {"val_loss": 1.0}

    history = fit(torch.nn.Linear(1, 1), Flat(), LoopConfig(epochs=20, patience=2, progress=False), tmp_path)
    assert len(history) == 3


def test_nan_loss_is_a_clear_error(tmp_path):
    class Bad(Regression):
        def loss(self, model, batch):
            return model(batch[0]).sum() * float("nan")

    with pytest.raises(FloatingPointError, match="loss became nan at epoch 1"):
        fit(torch.nn.Linear(1, 1), Bad(), LoopConfig(epochs=1, progress=False), tmp_path)


def test_training_state_round_trip(tmp_path):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.randn(4, 2)).sum().backward()
    opt.step()
    save_training_state(tmp_path / "s.safetensors", model, opt, {"epoch": 3})
    model2 = torch.nn.Linear(2, 1)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.5)
    assert load_training_state(tmp_path / "s.safetensors", model2, opt2) == {"epoch": 3}
    assert torch.equal(model2.weight, model.weight)
    assert opt2.param_groups[0]["lr"] == 0.01
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")

    def boom(*_):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_loading_never_runs_code(tmp_path):
    """A pickle in place of weights is rejected as data, not executed."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("open('%s', 'w').write('pwned')" % (tmp_path / "flag"),))

    (tmp_path / "model.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_tensors(tmp_path / "model.safetensors")
    assert not (tmp_path / "flag").exists()


def test_bad_files_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.safetensors: no such file"):
        load_tensors(tmp_path / "missing.safetensors")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"c.json: not valid JSON"):
        read_json(tmp_path / "c.json")
    save_tensors(tmp_path / "w.safetensors", {"a": torch.ones(2)})
    assert torch.equal(load_tensors(tmp_path / "w.safetensors")[0]["a"], torch.ones(2))


def test_bogus_safetensors_are_refused_before_their_tensors_are_read(tmp_path, monkeypatch):
    import pickle
    from pathlib import Path

    save_tensors(tmp_path / "w.safetensors", {"a": torch.arange(6.0)})
    whole = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(whole[:-5])
    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"a": [1, 2, 3]}))
    (tmp_path / "huge.safetensors").write_bytes((2**40).to_bytes(8, "little") + b"{}")
    big = tmp_path / "big.safetensors"  # 1.5 GB on disk (sparse), a header that describes nothing
    with open(big, "wb") as f:
        f.write((2).to_bytes(8, "little") + b"{}")
        f.truncate(1_500_000_000)
    reads = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or real(self))
    for name, message in [
        ("cut", "truncated or corrupted"),
        ("pickle", "header claims"),
        ("huge", "header claims 1099511627776 bytes"),
        ("big", "truncated or corrupted"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_tensors(tmp_path / f"{name}.safetensors")
    assert reads == []  # none of them was read whole
    assert torch.equal(load_tensors(tmp_path / "w.safetensors")[0]["a"], torch.arange(6.0))


def test_temporaries_left_by_a_killed_write_are_removed_on_resume(tmp_path):
    cfg = LoopConfig(epochs=2, lr=0.05, progress=False)
    fit(torch.nn.Linear(1, 1), Regression(), cfg, tmp_path)
    (tmp_path / ".checkpoint.safetensors.abc123.tmp").write_bytes(b"x" * 1000)  # a write killed midway
    (tmp_path / ".loss.png.tmp.png").write_bytes(b"x")
    (tmp_path / "notes.tmp").write_text("the user's own file stays")
    fit(torch.nn.Linear(1, 1), Regression(), LoopConfig(epochs=3, lr=0.05, progress=False), tmp_path, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == ["notes.tmp"]
