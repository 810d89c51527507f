"""--refit: after the validation part chose each model's epochs, the same models are trained again
from their initial weights on all the training data, for those epochs, with the same random streams."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_ensemble import Line, Mean, Scripted, members
from test_regress import TINY, write_tsv

from grukit.cli import main
from grukit.training import LoopConfig, fit, load_tensors, loop
from grukit.training.loop import chosen_epochs, refit

CFG = LoopConfig(epochs=5, lr=0.05, weight_decay=0.01, grad_clip=0.5, progress=False)


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_refit_on_the_same_data_replays_each_members_kept_weights():
    """Refitted on the fitting data alone, each member for its chosen epochs, the weights are
    bit for bit those fit kept: the same initialisation, batch orders, dropout streams and steps."""
    parts = members(3)
    initial = copy.deepcopy(Mean(parts).state_dict())
    objective = Scripted(parts)
    history = fit(Mean(parts), objective, CFG)
    epochs = chosen_epochs(history, "val_loss", "min", members=3)
    assert epochs == [2, 4, 1]  # the scripts' minima at epochs 1, 3, 0
    again = Mean(members(3, seed=7))
    again.load_state_dict(initial)
    rows = refit(again, Line(), CFG, epochs)
    for k, kept in enumerate(parts):
        assert all(torch.equal(v, again.members[k].state_dict()[n]) for n, v in kept.state_dict().items())
    assert len(rows) == 4 and ["member2_train_loss" in r for r in rows] == [True, False, False, False]


def test_a_single_models_refit_replays_fit_and_trains_on_what_it_is_given():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    initial = copy.deepcopy(model.state_dict())
    first = Line()
    history = fit(model, first, CFG)
    (epochs,) = chosen_epochs(history, "val_loss", "min")
    assert epochs == 1 + min(range(len(history)), key=lambda e: history[e]["val_loss"])
    again = torch.nn.Linear(2, 1)
    again.load_state_dict(initial)
    second = Line()
    refit(again, second, CFG, [epochs])
    assert second.orders == first.orders[:epochs]  # one pass per chosen epoch, the same batch orders
    assert torch.equal(again.weight, model.weight) and torch.equal(again.bias, model.bias)


@pytest.mark.parametrize("interrupt", [(1, 1), (1, 2), (2, 1)])  # before epoch 1, inside it after member 0, before 2
def test_an_interrupted_refit_resumes_bit_for_bit(tmp_path, interrupt):
    epochs = [3, 2]

    def start():
        return Mean(members(2))

    refit(start(), Line(), CFG, epochs, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        refit(start(), Line(interrupt), CFG, epochs, tmp_path / "cut")
    rows = refit(start(), Line(), CFG, epochs, tmp_path / "cut", resume=True)
    whole = [json.loads(x) for x in (tmp_path / "whole" / loop.REFIT_HISTORY_FILE).read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(rows) == strip(whole) and len(rows) == 3
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == (
        tmp_path / "whole" / "model.safetensors"
    ).read_bytes()
    # a checkpoint of other epoch counts (the first phase chose again) is not continued: the refit restarts
    other = refit(start(), Line(), CFG, [1, 1], tmp_path / "cut", resume=True)
    assert len(other) == 1


def test_bad_refit_inputs_are_one_line():
    with pytest.raises(ValueError, match="one epoch count >= 1 per model"):
        refit(Mean(members(2)), Line(), CFG, [3])
    with pytest.raises(ValueError, match="one epoch count >= 1 per model"):
        refit(torch.nn.Linear(2, 1), Line(), CFG, [0])
    with pytest.raises(ValueError, match="never a number"):
        chosen_epochs([{"epoch": 0, "val_loss": float("nan")}], "val_loss", "min")


def history_of(out, name="history.jsonl"):
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


def test_regress_refit_trains_on_fit_and_validation_for_the_chosen_epochs(tmp_path, monkeypatch):
    from grukit.tasks import regress

    sizes = []  # sequences per call of the objective's batches: fit phase, then refit
    batches = regress._Objective.batches

    def counted(self, epoch, gen):
        out = batches(self, epoch, gen)
        sizes.append(sum(len(b[2]) for b in out))
        return out

    monkeypatch.setattr(regress._Objective, "batches", counted)
    data = write_tsv(tmp_path / "R")
    out = tmp_path / "run"
    run("train", "regress", "--data", data, "--out", out, "--refit", *TINY[:1], "4", *TINY[2:])
    metrics = json.loads((out / "metrics.json").read_text())
    history = history_of(out)
    best = min(range(4), key=lambda e: history[e]["val_loss"])
    assert metrics["refit"]["epochs"] == [best + 1]
    assert sizes == [24] * 4 + [30] * (best + 1)  # 80% of the 30 training series, then all 30
    assert len(history_of(out, loop.REFIT_HISTORY_FILE)) == best + 1
    # the validation scores are the first phase's model's (validated.safetensors), beside its test scores
    assert (out / "validated.safetensors").is_file() and (out / "model.safetensors").is_file()
    state = json.loads((out / "config.json").read_text())["state"]
    assert metrics["validation"]["mae"] == pytest.approx(history[best]["val_mae_scaled"] * state["target_std"], 1e-5)
    assert set(metrics["refit"]["without_refit"]) >= {"mae", "rmse", "r2"}
    assert metrics["refit"]["without_refit"]["mae"] != metrics["mae"]
    evaluated = json.loads(run("eval", "--json", out).output)
    assert evaluated["mae"] == pytest.approx(metrics["mae"])  # eval scores the refitted model
    assert evaluated["validation"] == pytest.approx(metrics["validation"])
    assert evaluated["refit"]["without_refit"]["mae"] == pytest.approx(metrics["refit"]["without_refit"]["mae"])
    lines = run("predict", out, "--data", data / "R_TEST.tsv").output.strip().splitlines()
    assert len(lines) == 30


def test_regress_ensemble_refit_and_resume(tmp_path, monkeypatch):
    data = write_tsv(tmp_path / "R")
    args = ["--data", data, "--ensemble", "2", "--refit", "--recurrent-dropout", "0.2", *TINY[2:]]
    run("train", "regress", "--out", tmp_path / "whole", *args, "--epochs", "4")
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    history = history_of(tmp_path / "whole")
    assert whole["refit"]["epochs"] == [
        1 + min(range(4), key=lambda e: history[e][f"member{k}_val_loss"]) for k in (0, 1)
    ]

    train_epoch = loop._train_epoch

    def interrupted(model, objective, optimizer, cfg, epoch, runtime, trained, gen, what=""):
        if "refit" in what and epoch == 1:
            raise KeyboardInterrupt
        return train_epoch(model, objective, optimizer, cfg, epoch, runtime, trained, gen, what)

    monkeypatch.setattr(loop, "_train_epoch", interrupted)
    run("train", "regress", "--out", tmp_path / "cut", *args, "--epochs", "4", ok=False)
    monkeypatch.undo()
    assert max(whole["refit"]["epochs"]) > 1  # so the interruption came inside the refit
    assert (tmp_path / "cut" / loop.REFIT_STATE_FILE).is_file() and not (tmp_path / "cut" / "metrics.json").exists()
    run("train", "regress", "--resume", tmp_path / "cut")
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert cut["mae"] == whole["mae"] and cut["refit"] == whole["refit"]
    for name in ("model.safetensors", "validated.safetensors"):
        a, b = load_tensors(tmp_path / "cut" / name)[0], load_tensors(tmp_path / "whole" / name)[0]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # --refit cannot be switched on resume: one line, nothing changed
    before = (tmp_path / "cut" / "model.safetensors").read_bytes()
    result = run("train", "regress", "--resume", tmp_path / "cut", "--no-refit", ok=False)
    assert result.exit_code == 1 and "trained with --refit" in result.output
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == before
    # more epochs on resume: the first phase continues and the refit follows its new choice
    run("train", "regress", "--resume", tmp_path / "cut", "--epochs", "6")
    again = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    history = history_of(tmp_path / "cut")
    assert len(history) == 6
    assert again["refit"]["epochs"] == [
        1 + min(range(6), key=lambda e: history[e][f"member{k}_val_loss"]) for k in (0, 1)
    ]


def test_classify_refits_and_keeps_the_first_phases_validation(tmp_path):
    from test_template import CLASSIFY, one_line_error, ucr

    data = ucr(tmp_path / "d", n=20)
    out = tmp_path / "run"
    run("train", "classify", "--data", data, "--out", out, "--refit", *CLASSIFY)
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["refit"]["epochs"]) == 1 and "accuracy" in metrics["refit"]["without_refit"]
    assert json.loads(run("eval", "--json", out).output)["accuracy"] == pytest.approx(metrics["accuracy"])
    from grukit.report import build_report

    assert "validated.safetensors" in build_report(out) and "refit_history.jsonl" in build_report(out)
    one_line_error(run("train", "classify", "--resume", out, "--no-refit", ok=False), "trained with --refit")


def test_refit_needs_a_validation_part(tmp_path):
    data = write_tsv(tmp_path / "R")
    result = run(
        "train", "regress", "--data", data, "--out", tmp_path / "a", "--refit", "--val-fraction", "0", *TINY, ok=False
    )
    assert result.exit_code != 0 and "--val-fraction must be in (0, 1)" in result.output
    assert not (tmp_path / "a").exists()


def test_the_regressor_refits():
    from grukit import GRURegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 1, 8)).astype(np.float32)
    y = X.mean(axis=(1, 2))
    plain = GRURegressor(hidden_size=4, epochs=3, random_state=0).fit(X, y)
    refitted = GRURegressor(hidden_size=4, epochs=3, random_state=0, refit=True).fit(X, y)
    assert refitted.config_.refit and len(refitted.history_) == len(plain.history_) == 3
    assert not np.allclose(plain.predict(X), refitted.predict(X))
