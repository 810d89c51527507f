"""The task template and the runs it writes: runtime sharding, in-memory fits, typed state,
tables, and every way a run can go wrong ending in one line with nothing changed on disk."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from grukit.cli import main
from grukit.tasks import TASKS
from grukit.tasks.classify_data import ClassifyState
from grukit.tasks.config import check_memory
from grukit.tasks.results import Table
from grukit.training import LoopConfig, fit
from grukit.training.runtime import Runtime

ADDING = ["--epochs", "1", "--steps", "5", "--eval-pairs", "20", "--hidden-size", "4", "--no-progress"]
CLASSIFY = ["--epochs", "2", "--hidden-size", "4", "--batch-size", "8", "--no-progress"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(folder):
    """Every file's name and content hash: to show a command changed nothing."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_line_error(r, *needles):
    assert r.exit_code == 1, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    for needle in needles:
        assert needle in lines[0], r.output


def ucr(folder, length=10, n=16, labelled=True):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    for split in ("TRAIN", "TEST"):
        rows = []
        for i in range(n):
            values = (1 if i % 2 else -1) * np.linspace(-1, 1, length) + 0.1 * rng.standard_normal(length)
            rows.append("\t".join(([str(i % 2 + 1)] if labelled else []) + [f"{v:.4f}" for v in values]))
        (folder / f"T_{split}.tsv").write_text("\n".join(rows) + "\n")
    return folder


# ---- the loop: runtime and in-memory fits ----------------------------------------


class Counting:
    """y = 2x; counts the batches it is given and snapshots the weights at every validation."""

    monitor, mode = "val_loss", "min"

    def __init__(self, scores=None):
        self.seen, self.weights, self.scores = [], [], scores
        self.x = torch.linspace(-1, 1, 32).unsqueeze(1)

    def batches(self, epoch, gen):
        return [self.x[i : i + 4] for i in range(0, 32, 4)]  # 8 batches

    def loss(self, model, x):
        self.seen.append(x)
        return ((model(x) - 2 * x) ** 2).mean()

    def validate(self, model):
        self.weights.append(model.weight.detach().clone())
        k = len(self.weights) - 1
        return {"val_loss": self.scores[k] if self.scores else ((model(self.x) - 2 * self.x) ** 2).mean().item()}


def test_runtime_shards_batches_and_only_rank_0_writes(tmp_path):
    assert Runtime(1, 3).shard(list(range(8))) == [1, 4, 7] and Runtime().writer and not Runtime(1, 2).writer
    x, y = Runtime(1, 3).split((torch.arange(8), np.arange(8) * 10))
    assert x.tolist() == [2, 3, 4] and y.tolist() == [20, 30, 40]  # slices of 2, 3, 3
    with pytest.raises(ValueError, match="a batch of 2 cannot be split over 3 processes"):
        Runtime(0, 3).split(torch.arange(2))
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, world_size=2\), got 2"):
        Runtime(2, 2)
    obj = Counting()
    fit(torch.nn.Linear(1, 1), obj, LoopConfig(epochs=2, progress=False), tmp_path / "peer", runtime=Runtime(1, 2))
    assert len(obj.seen) == 2 * 8 and torch.equal(obj.seen[0], obj.x[2:4])  # its half of every batch
    assert not (tmp_path / "peer").exists()  # a peer never writes
    fit(
        torch.nn.Linear(1, 1),
        Counting(),
        LoopConfig(epochs=2, progress=False),
        tmp_path / "rank0",
        runtime=Runtime(0, 2),
    )
    assert {"model.safetensors", "checkpoint.safetensors", "history.jsonl", "loss.png"} <= set(
        snapshot(tmp_path / "rank0")
    )


def test_fit_without_a_run_directory_keeps_the_best_weights_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    obj = Counting(scores=[3.0, 1.0, 2.0, 5.0])  # epoch 2 is the best
    model = torch.nn.Linear(1, 1)
    history = fit(model, obj, LoopConfig(epochs=4, lr=0.1, progress=False), None)
    assert [r["val_loss"] for r in history] == [3.0, 1.0, 2.0, 5.0]
    assert torch.equal(model.weight, obj.weights[1]) and not torch.equal(model.weight, obj.weights[3])
    assert list(tmp_path.iterdir()) == []


def test_weights_turning_infinite_stop_training_with_a_clear_error(tmp_path):
    class Explode(Counting):
        """Adam moves the weight by about lr a step: from -3.3e38, two steps of 1e37 pass float32's
        -3.4e38 on the epoch's last step, while every loss the loop sees (before its step) is finite."""

        def batches(self, epoch, gen):
            return [self.x] * 2

        def loss(self, model, x):
            return model.weight.sum()

    with pytest.raises(FloatingPointError, match=r"weights became NaN or inf in epoch 1 \(weight\).*lower --lr"):
        model = torch.nn.Linear(1, 1)
        torch.nn.init.constant_(model.weight, -3.3e38)
        fit(model, Explode(), LoopConfig(epochs=2, lr=1e37, grad_clip=0, progress=False), tmp_path / "r")
    assert not (tmp_path / "r" / "model.safetensors").exists()  # nothing non-finite was kept


def test_a_diverging_cli_run_is_one_line_and_leaves_no_run(tmp_path):
    out = tmp_path / "run"
    r = run("train", "adding", "--out", out, *ADDING, "--lr", "1e37", "--grad-clip", "0")
    one_line_error(r, "loss became inf at epoch 1", "lower --lr")
    assert not out.exists()


# ---- runs read back: NaN weights, missing tensors, state ------------------------------


@pytest.fixture(scope="module")
def adding_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("adding") / "run"
    r = run("train", "adding", "--out", out, *ADDING)
    assert r.exit_code == 0, r.output
    return out


def copy_run(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_train_prints_an_aligned_summary(adding_run):
    metrics = json.loads((adding_run / "metrics.json").read_text())
    r = run("eval", adding_run)
    lines = r.output.splitlines()
    assert lines[1].split() == ["test", "exact", "sums", "bits", "right"]
    assert set(lines[2]) == {"-", " "}
    assert (
        lines[-1].startswith("random 64-bit pairs")
        and lines[-1].split()[-2] == f"{metrics['accuracy_by_bits']['64']:.4g}"
    )
    widths = {len(line.rstrip()) for line in lines[1:4]}
    assert len(widths) == 1  # header, rule and the first row line up


def test_nan_weights_are_refused_by_eval_predict_and_never_reported(adding_run, tmp_path):
    bad = copy_run(adding_run, tmp_path / "bad")
    weights = load_file(bad / "model.safetensors")
    weights["head.bias"] = torch.full_like(weights["head.bias"], float("nan"))
    save_file(weights, bad / "model.safetensors")
    one_line_error(run("eval", bad), "model.safetensors", "head.bias", "NaN or inf")
    one_line_error(run("predict", bad, "1", "2"), "NaN or inf")


def test_a_missing_tensor_is_named(adding_run, tmp_path):
    bad = copy_run(adding_run, tmp_path / "bad")
    weights = load_file(bad / "model.safetensors")
    del weights["head.weight"]
    save_file(weights, bad / "model.safetensors")
    one_line_error(run("eval", bad), "model.safetensors", "missing head.weight")
    state = load_file(bad / "checkpoint.safetensors")
    del state["model.head.bias"]
    save_file(
        state,
        bad / "checkpoint.safetensors",
        metadata=json.loads(
            (adding_run / "checkpoint.safetensors").read_bytes()[
                8 : 8 + int.from_bytes((adding_run / "checkpoint.safetensors").read_bytes()[:8], "little")
            ]
        )["__metadata__"],
    )
    before = snapshot(bad)
    one_line_error(
        run("train", "adding", "--resume", bad, "--epochs", "2"), "checkpoint.safetensors", "missing head.bias"
    )
    assert snapshot(bad) == before


def test_a_state_that_does_not_fit_the_task_is_one_line(adding_run, tmp_path):
    bad = copy_run(adding_run, tmp_path / "bad")
    meta = json.loads((bad / "config.json").read_text())
    meta["state"] = {"vocab": "abc"}
    (bad / "config.json").write_text(json.dumps(meta))
    one_line_error(run("eval", bad), "config.json", "AddingState", "unknown vocab")
    with pytest.raises(ValueError, match="missing kind, classes"):
        ClassifyState.from_json({}, "x")


def test_a_failed_resume_changes_nothing(tmp_path):
    data = ucr(tmp_path / "d")
    out = tmp_path / "run"
    assert run("train", "classify", "--data", data, "--out", out, *CLASSIFY).exit_code == 0
    before = snapshot(out)
    one_line_error(
        run("train", "classify", "--resume", out, "--hidden-size", "8"),
        "cannot resume",
        "checkpoint.safetensors",
        "shape",
    )
    assert snapshot(out) == before
    other = ucr(tmp_path / "e", length=12)  # a different data set: other training length
    one_line_error(run("train", "classify", "--resume", out, "--data", other), "cannot resume", "'length'")
    assert snapshot(out) == before
    assert run("train", "classify", "--resume", out, "--epochs", "3").exit_code == 0  # still resumable


def test_a_failed_overwrite_keeps_the_old_run(adding_run, tmp_path):
    out = copy_run(adding_run, tmp_path / "run")
    before = snapshot(out)
    one_line_error(
        run("train", "classify", "--out", out, "--overwrite", "--data", tmp_path / "missing.tsv", *CLASSIFY),
        "missing.tsv",
    )
    assert snapshot(out) == before and [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (
        run("train", "classify", "--out", out, "--overwrite", "--data", ucr(tmp_path / "d"), *CLASSIFY).exit_code == 0
    )
    assert json.loads((out / "config.json").read_text())["task"] == "classify"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "run"]  # the replaced run is gone


def test_a_hidden_size_that_cannot_fit_in_memory_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    one_line_error(
        run("train", "adding", "--out", out, "--hidden-size", "10000000"), "--hidden-size 10000000 needs about", "GiB"
    )
    assert not out.exists()
    check_memory(TASKS["adding"].Config(hidden_size=1024))  # a big but sane size passes


# ---- predict: unlabelled rows, mismatched widths, --to -------------------------------------


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    out = root / "run"
    r = run("train", "classify", "--data", ucr(root / "d"), "--out", out, *CLASSIFY)
    assert r.exit_code == 0, r.output
    return out, root / "d"


def test_predict_reads_unlabelled_ucr_rows_by_the_training_length(classify_run, tmp_path):
    out, data = classify_run
    plain = ucr(tmp_path / "plain", labelled=False)
    labelled = run("predict", out, "--data", data / "T_TEST.tsv").output.splitlines()
    unlabelled = run("predict", out, "--data", plain / "T_TEST.tsv").output.splitlines()
    assert len(labelled) == 16 and labelled == unlabelled
    wrong = ucr(tmp_path / "wrong", length=7)
    one_line_error(
        run("predict", out, "--data", wrong / "T_TEST.tsv"),
        "rows of 8 values",
        "expected 10 values per row (or a label then 10 values)",
    )


def test_predict_to_a_csv_file(classify_run, tmp_path):
    out, data = classify_run
    r = run("predict", out, "--data", data / "T_TEST.tsv", "--to", tmp_path / "p.csv")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "id,label,probability" and len(lines) == 17
    printed = run("predict", out, "--data", data / "T_TEST.tsv").output.splitlines()
    assert [line.split(",")[:2] for line in lines[1:]] == [line.split("\t")[:2] for line in printed]


def test_table_render_and_csv(tmp_path):
    t = Table(("name", "value", "other"), (("a", 0.123456, None), ("longer", 12, True)), title="T", notes=("n",))
    assert t.render().splitlines() == [
        "T",
        "name     value  other",
        "------  ------  -----",
        "a       0.1235      -",
        "longer      12    yes",
        "n",
    ]
    assert t.tsv() == ["a\t0.123456\t-", "longer\t12\tyes"]
    t.write_csv(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().splitlines() == ["name,value,other", "a,0.123456,", "longer,12,True"]
    with pytest.raises(ValueError, match="a row of 1 cells in a table of 3 columns"):
        Table(("a", "b", "c"), (("x",),))


def test_help_texts_are_whole_and_name_only_what_exists():
    listings = [run("--help").output, run("train", "--help").output]
    commands = [line for text in listings for line in text.split("Commands:")[1].splitlines() if line.strip()]
    assert len(commands) >= 8 + len(TASKS)
    assert not [line for line in commands if line.rstrip().endswith("...") or line.rstrip().endswith("e.g.")]
    for name in TASKS:
        assert run("train", name, "--help").exit_code == 0
    assert ("music" in run("generate", "--help").output) == ("music" in TASKS) and "shakespeare-genre" not in run(
        "tasks"
    ).output


@pytest.mark.parametrize("threads", ["1", "2"])
def test_deterministic_runs_are_bit_identical(tmp_path, threads):
    data = ucr(tmp_path / "d")
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        r = run("train", "classify", "--data", data, "--out", out, *CLASSIFY, "--threads", threads, "--deterministic")
        assert r.exit_code == 0, r.output
        metrics = json.loads((out / "metrics.json").read_text())
        metrics.pop("train_seconds")
        runs.append(((out / "model.safetensors").read_bytes(), metrics))
    assert runs[0] == runs[1]
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run


def test_use_deterministic_switches_torchs_mode():
    import grukit

    try:
        grukit.use_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        grukit.use_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(TypeError, match="True or False"):
        grukit.use_deterministic("yes")


def test_every_task_trains_loads_and_predicts_from_python(tmp_path):
    """The Python form of the CLI (the README's "Every task from Python"): train, summarise, load, predict."""
    from test_music import midi_folder
    from test_speech import write_words

    from grukit.tasks import get_task

    runs = {
        "speech": (
            dict(
                data=str(write_words(tmp_path / "words", per_class=6)),
                epochs=2,
                hidden_size=8,
                batch_size=8,
                progress=False,
            ),
            lambda: (str(next((tmp_path / "words").rglob("*.wav"))),),
            None,
        ),
        "music": (
            dict(
                data=str(midi_folder(tmp_path / "midi")),
                epochs=1,
                hidden_size=8,
                batch_size=4,
                seq_len=16,
                embedding_size=4,
                progress=False,
            ),
            None,
            None,
        ),
        "classify": (
            dict(data=str(ucr(tmp_path / "ucr")), epochs=1, hidden_size=4, batch_size=8, progress=False),
            lambda: (),
            str(tmp_path / "ucr" / "T_TEST.tsv"),
        ),
    }
    for name, (values, args, data) in runs.items():
        task = get_task(name)
        metrics = task.train(task.Config(**values), tmp_path / name)
        assert json.loads((tmp_path / name / "metrics.json").read_text()).keys() >= {
            k for k in metrics if k != "train_seconds"
        }
        assert task.summarize(metrics).render().count("\n") >= 2
        _cfg, state, model = task.load(tmp_path / name)
        assert isinstance(state, task.State) and not model.training
        if args is not None:
            table = task.predict(tmp_path / name, args(), data)
            assert len(table.rows) >= 1 and len(table.columns) >= 2
