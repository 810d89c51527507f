"""Ensembles in the training loop: every member trains as it would alone (its own batch order,
gradient clipping and early stop), keeps the weights of its own best validation epoch, and a
resumed run ends bit for bit where an uninterrupted one does."""

from __future__ import annotations

import json

import pytest
import torch

from grukit.training import LoopConfig, fit, load_tensors, loop
from grukit.training.ensemble import Ensemble

N = 48  # training points


class Mean(Ensemble):
    def forward(self, x):
        return self.mean(x)


class Line:
    """y = 2x0 - x1 + 0.5 from N points in batches of 8; records each model's batch order."""

    monitor, mode = "val_loss", "min"

    def __init__(self, interrupt=None):
        g = torch.Generator().manual_seed(5)
        self.x = torch.randn(N, 2, generator=g)
        self.y = self.x @ torch.tensor([[2.0], [-1.0]]) + 0.5
        self.orders: list[list[int]] = []  # one per call of batches, in call order
        self.interrupt = interrupt  # (epoch, call): raise KeyboardInterrupt at that call of batches in that epoch
        self.calls: dict[int, int] = {}

    def batches(self, epoch, gen):
        self.calls[epoch] = self.calls.get(epoch, 0) + 1
        if self.interrupt == (epoch, self.calls[epoch]):
            raise KeyboardInterrupt
        order = torch.randperm(N, generator=gen)
        self.orders.append(order.tolist())
        return [(self.x[order[i : i + 8]], self.y[order[i : i + 8]]) for i in range(0, N, 8)]

    def loss(self, model, batch):
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1])

    def validate(self, model):
        return {"val_loss": torch.nn.functional.mse_loss(model(self.x[:16]), self.y[:16]).item()}


def members(n, seed=0):
    torch.manual_seed(seed)
    return [torch.nn.Linear(2, 1) for _ in range(n)]


CFG = LoopConfig(epochs=4, lr=0.05, weight_decay=0.01, grad_clip=0.5, progress=False)


def test_members_draw_their_own_batch_orders_and_member_0_the_single_models():
    objective = Line()
    fit(Mean(members(3)), objective, CFG)
    by_epoch = [objective.orders[3 * e : 3 * e + 3] for e in range(CFG.epochs)]  # members in turn, every epoch
    for orders in by_epoch:
        assert len({tuple(o) for o in orders}) == 3  # three different orders
    single = Line()
    fit(members(1)[0], single, CFG)
    assert [orders[0] for orders in by_epoch] == single.orders


def test_a_member_trains_exactly_as_it_would_alone():
    """The optimiser the members share moves only the member being trained (AdamW would otherwise
    keep moving and decaying the others from their moments), and clipping (0.5, active here) sees
    only that member's gradients."""
    alone = members(1)[0]
    history_alone = fit(alone, Line(), CFG)
    first, other = members(1)[0], torch.nn.Linear(2, 1)
    with torch.no_grad():
        other.weight.mul_(40.0)  # a member with large gradients: global clipping would slow the first member
    ensemble = Mean([first, other])
    history = fit(ensemble, Line(), CFG)
    assert [r["member0_train_loss"] for r in history] == [r["train_loss"] for r in history_alone]
    assert [r["member0_val_loss"] for r in history] == [r["val_loss"] for r in history_alone]
    assert torch.equal(first.weight, alone.weight) and torch.equal(first.bias, alone.bias)
    assert [r["train_loss"] for r in history] == [
        (r["member0_train_loss"] + r["member1_train_loss"]) / 2 for r in history
    ]


class Scripted(Line):
    """Each member's validation loss follows a script by epoch, so their best epochs differ;
    the weights each member had when validated are recorded."""

    SCRIPT = ([3.0, 1.0, 2.0, 4.0, 5.0], [4.0, 3.0, 2.0, 1.0, 1.5], [1.0, 2.0, 3.0, 4.0, 6.0])

    def __init__(self, models, interrupt=None):
        super().__init__(interrupt)
        self.models, self.seen = models, {i: [] for i in range(len(models))}

    def validate(self, model):
        for i, m in enumerate(self.models):
            if model is m:
                self.seen[i].append({k: v.clone() for k, v in m.state_dict().items()})
                return {"val_loss": self.SCRIPT[i][len(self.seen[i]) - 1]}
        return super().validate(model)  # the whole ensemble


@pytest.mark.parametrize("to_disk", [False, True])
def test_each_member_keeps_the_weights_of_its_own_best_epoch(tmp_path, to_disk):
    parts = members(3)
    objective = Scripted(parts)
    ensemble = Mean(parts)
    history = fit(ensemble, objective, LoopConfig(epochs=5, lr=0.05, progress=False), tmp_path if to_disk else None)
    best = {0: 1, 1: 3, 2: 0}  # the scripts' minima
    for i, epoch in best.items():
        for name, value in parts[i].state_dict().items():
            assert torch.equal(value, objective.seen[i][epoch][name]), (i, name)
        assert not torch.equal(objective.seen[i][epoch]["weight"], objective.seen[i][-1]["weight"])  # not the last
    assert [r["member1_val_loss"] for r in history] == Scripted.SCRIPT[1]
    ensemble_now = [r["val_loss"] for r in history]  # the ensemble at each epoch's weights: not a member's
    assert len(set(ensemble_now)) == 5 and not set(ensemble_now) & {v for s in Scripted.SCRIPT for v in s}
    if to_disk:
        kept, _ = load_tensors(tmp_path / "model.safetensors")
        assert kept.keys() == ensemble.state_dict().keys()
        assert all(torch.equal(v, ensemble.state_dict()[k]) for k, v in kept.items())
        state = json.loads(load_tensors(tmp_path / "checkpoint.safetensors")[1]["state"])
        assert state["best_epoch"] == [1, 3, 0] and state["best"] == [1.0, 1.0, 1.0]


def test_each_member_stops_on_its_own_patience():
    parts = members(2)

    class Stale(Scripted):
        SCRIPT = ([1.0, 2.0, 2.0, 2.0, 2.0, 2.0], [6.0, 5.0, 4.0, 5.0, 5.0, 5.0])

    objective = Stale(parts)
    history = fit(Mean(parts), objective, LoopConfig(epochs=6, lr=0.05, patience=2, progress=False))
    assert ["member0_val_loss" in r for r in history] == [True, True, True, False, False]  # stale after epoch 2
    assert ["member1_val_loss" in r for r in history] == [True] * 5  # best at epoch 2, stale after epoch 4
    assert len(objective.seen[0]) == 3 and len(objective.seen[1]) == 5


@pytest.mark.parametrize("interrupt", [(2, 1), (2, 3)])  # before epoch 2, and inside it after two members trained
def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path, interrupt):
    cfg = LoopConfig(epochs=5, lr=0.05, progress=False)
    whole = fit(Mean(members(3)), Line(), cfg, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        fit(Mean(members(3)), Line(interrupt), cfg, tmp_path / "cut")
    assert len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) == 2
    resumed = fit(Mean(members(3, seed=9)), Line(), cfg, tmp_path / "cut", resume=True)  # weights: the checkpoint's
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(whole)
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == (
        tmp_path / "whole" / "model.safetensors"
    ).read_bytes()
    (cut, cut_meta), (want, want_meta) = (
        load_tensors(tmp_path / d / "checkpoint.safetensors") for d in ("cut", "whole")
    )
    assert cut_meta == want_meta  # (safetensors may write the metadata's keys in another order)
    assert cut.keys() == want.keys() and all(torch.equal(cut[k], want[k]) for k in want)


def test_an_earlier_shared_ensembles_checkpoint_is_refused(tmp_path):
    cfg = LoopConfig(epochs=1, lr=0.05, progress=False)
    fit(Mean(members(2)), Line(), cfg, tmp_path)
    path = tmp_path / "checkpoint.safetensors"
    tensors, meta = load_tensors(path)
    meta["state"] = json.dumps({"epoch": 1, "best": 0.5, "best_epoch": 0, "stale": 0})  # one best for all
    from grukit.training.checkpoint import save_tensors

    save_tensors(path, tensors, meta)
    with pytest.raises(ValueError, match="members shared their batches and best epoch"):
        fit(Mean(members(2)), Line(), LoopConfig(epochs=2, progress=False), tmp_path, resume=True)


def test_member_streams_differ_from_each_other_and_from_other_seeds():
    draws = {
        (seed, epoch, k): tuple(torch.randperm(20, generator=loop.member_generator(seed, epoch, k)).tolist())
        for seed in (0, 1)
        for epoch in (0, 1)
        for k in range(4)
    }
    assert len(set(draws.values())) == len(draws)
    assert draws[(1, 1, 0)] == tuple(torch.randperm(20, generator=loop.epoch_generator(1, 1)).tolist())
