"""The benchmark (and its cells section) runs end to end on a tiny grid and writes its table, JSON and plot."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from grukit import bench, bench_cells
from grukit.cli.main import main


def test_bench_library_tiny_grid(tmp_path):
    res = bench.run(
        (bench.Config(3, 2, 2, 4), bench.Config(2, 2, 2, 3, L=2, bidirectional=True)),
        cells=((2, 4),),
        min_time=0.0,
        peak_sizes=(64,),
    )
    assert {r["config"] for r in res["fp32"]} == {"T3 B2 I2 H4", "T2 B2 I2 H3 L2 bi"}
    for r in res["fp32"]:
        assert r["infer_ratio"] > 0 and r["train_ratio"] > 0 and r["bf16_train_ratio"] > 0
    table = bench.format_table(res)
    assert "geometric mean" in table and "cell B1 I2 H4" in table
    bench.plot(res, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 0


class _Clock:
    """A fake time.perf_counter: each call of a timed fn advances it by that fn's duration."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def fn(self, seconds, calls):
        def step():
            calls.append(seconds)
            self.now += seconds

        return step


@pytest.mark.parametrize(
    ("durations", "min_time", "want"),
    [
        ((0.001, 0.002), 0.0, 5),  # fast calls: min_reps rounds
        ((0.001, 0.002), 0.1, 34),  # until min_time is filled (3 ms a round)
        ((2.0, 0.001), 0.0, 3),  # a call over 1 s: 3 rounds
        ((1e-6, 1e-6), 1.0, 50),  # max_reps caps it
    ],
)
def test_rounds_alternate_and_stop_as_documented(monkeypatch, durations, min_time, want):
    clock = _Clock()
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    calls: list[float] = []
    times = bench.rounds([clock.fn(d, calls) for d in durations], min_time=min_time, max_reps=50)
    assert [len(ts) for ts in times] == [want, want]
    for ts, d in zip(times, durations):
        assert ts == pytest.approx([d] * want)  # each call timed on its own
    assert calls == [durations[0]] * 2 + [durations[1]] * 2 + list(durations) * want  # warm-up, then alternating


def test_flops_count_gemms():
    cfg = bench.Config(10, 2, 3, 4)  # T B I H: rows T*B = 20, gate columns 3H = 12
    assert cfg.flops(False) == 2 * 20 * 12 * (3 + 4)
    # training: recurrent part x 3 (forward, dW, dh); input part x 2 (no dx for the benchmark's x)
    assert cfg.flops(True) == 2 * 20 * 12 * (3 * 4 + 2 * 3)
    two = bench.Config(10, 2, 3, 4, L=2, bidirectional=True)  # layer 2: input 2H = 8, and it needs dx
    assert two.flops(False) == 2 * (2 * 20 * 12 * (3 + 4) + 2 * 20 * 12 * (8 + 4))
    assert two.flops(True) == 2 * (2 * 20 * 12 * (3 * 4 + 2 * 3) + 2 * 20 * 12 * (3 * 4 + 3 * 8))


def test_bench_cli_quick(tmp_path):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    args = ["bench", "--quick", "--min-time", "0.001", "--json", str(out), "--plot", str(png)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "geometric mean" in result.output
    data = json.loads(out.read_text())
    assert data["summary"]["train_geomean"] > 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.png"]  # written through temporary names


# The cells section (grukit.bench_cells): tiny shapes, no timing claims. On one
# thread: on a loaded machine, two OpenMP threads of tiny ops can wait ~100x longer.


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY_CELLS = bench_cells.CellsGrid(
    layer_norm=(bench.Config(3, 2, 2, 4), bench.Config(2, 2, 2, 3, L=2, bidirectional=True)),
    baseline=((bench.Config(5, 2, 3, 4), 10.0),),
    options=(bench.Config(3, 2, 2, 4),),
)


def test_bench_cells_tiny_grid(tmp_path, one_thread):
    res = bench_cells.run(TINY_CELLS, min_time=0.0)
    json.dumps(res)  # serialisable as it is
    assert [r["config"] for r in res["layer_norm"]["rows"]] == ["T3 B2 I2 H4", "T2 B2 I2 H3 L2 bi"]
    for r in res["layer_norm"]["rows"]:
        assert r["infer_ratio"] > 0 and r["train_ratio"] > 0
    (row,) = res["baseline"]["rows"]
    assert row["config"] == "T5 B2 I3 H4" and row["max_abs_diff"] <= bench_cells.ATOL and row["train_ratio"] > 0
    assert [(r["option"], r["p"]) for r in res["options"]["rows"]] == [
        ("zoneout", 0.1),
        ("recurrent_dropout", 0.25),
        ("weight_dropout", 0.25),
    ]
    assert res["layer_norm"]["target_max"] == 1.3 and res["options"]["target_max"] == 1.15
    assert all(isinstance(res[k]["met"], bool) for k in ("layer_norm", "baseline", "options"))
    table = bench_cells.format_table(res)
    assert "target <= 1.30x" in table and "zoneout=0.1" in table and ">=10x" in table
    bench_cells.plot(res, str(tmp_path / "cells.png"))
    assert (tmp_path / "cells.png").stat().st_size > 0


def test_bench_cells_default_grid_is_the_brief():
    assert bench_cells.CELLS.layer_norm == bench.GRID + (bench.Config(200, 8, 40, 64),)
    assert [(c.name, t) for c, t in bench_cells.CELLS.baseline] == [
        ("T200 B8 I40 H64", 10.0),
        ("T1000 B1 I64 H256", 10.0),
        ("T100 B32 I64 H256", 2.0),
    ]
    assert bench_cells.CELLS.options == bench.GRID


def _swapped_gates(self, x, h):  # r and z exchanged: a plausible slip in a hand-written cell
    gi = self.ln_ih(self.ih(x)) + self.b_ih
    gh = self.ln_hh(self.hh(h)) + self.b_hh
    i_z, i_r, i_n = gi.chunk(3, -1)
    h_z, h_r, h_n = gh.chunk(3, -1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


@pytest.mark.parametrize("wrong", [("eps", 1e-3), ("forward", _swapped_gates)], ids=["eps-1e-3", "r-z-swapped"])
def test_bench_cells_refuses_a_baseline_that_computes_something_else(monkeypatch, wrong, one_thread):
    monkeypatch.setattr(bench_cells.UserLayerNormGRUCell, *wrong)
    grid = bench_cells.CellsGrid(layer_norm=(), baseline=TINY_CELLS.baseline, options=())
    with pytest.raises(
        bench_cells.BaselineMismatch, match=r"does not compute grukit's LayerNorm-GRU at T5 B2: max \|difference\|"
    ):
        bench_cells.run(grid, min_time=0.0)


def test_bench_cli_cells_quick(tmp_path, one_thread):
    out = tmp_path / "cells.json"
    result = CliRunner().invoke(
        main, ["bench", "--cells", "--quick", "--min-time", "0.001", "--threads", "1", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "(a) LayerNorm-GRU" in result.output and "fp32 matmul peak" not in result.output  # only the cells section
    data = json.loads(out.read_text())
    assert set(data) == {"cells"} and {"machine", "layer_norm", "baseline", "options"} <= set(data["cells"])


# The contention benchmark (grukit.bench_contention): tiny shapes, no timing claims.


def test_busy_process_spins_and_stops():
    from grukit import bench_contention

    with bench_contention.busy_process() as proc:
        assert proc.poll() is None  # running beside the benchmark
    assert proc.poll() is not None  # and gone after it


def test_bench_contention_tiny_grid(tmp_path):
    from grukit import bench_contention

    before = torch.get_num_threads()
    res = bench_contention.run((bench.Config(3, 2, 2, 4),), steps=((2, 4),), min_time=0.0, busy=False)
    assert torch.get_num_threads() == before  # the 1- and 2-thread rounds set threads back
    assert [r["config"] for r in res["rows"]] == ["T3 B2 I2 H4", "cell step B1 I2 H4"]
    cases = [r[m] for r in res["rows"] for m in ("infer", "train") if m in r]
    assert len(cases) == 3 and all(c["slowdown"] > 0 and c["vs_torch"] > 0 for c in cases)
    assert res["summary"]["worst_slowdown"] == max(c["slowdown"] for c in cases)
    table = bench_contention.format_table(res)
    assert "T3 B2 I2 H4" in table and "no busy process" in table
    bench_contention.plot(res, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 0


def test_bench_cli_contention_quick(tmp_path):
    out = tmp_path / "c.json"
    result = CliRunner().invoke(main, ["bench", "--contention", "--quick", "--min-time", "0.001", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "with one busy process beside" in result.output
    assert json.loads(out.read_text())["machine"]["busy_process"] is True
    bad = CliRunner().invoke(main, ["bench", "--contention", "--peers"])
    assert bad.exit_code == 2 and "choose one" in bad.output


def test_ratio_axis_labels_round_speed_ups_only():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.barh([0, 1, 2], [0.3, 1.7, 9.0])
    bench.ratio_axis(ax)
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    shown = [t.get_text() for t, v in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= v <= hi]
    assert shown == ["0.5x", "1x", "2x", "4x", "8x"]
    assert ax.get_xscale() == "log" and not ax.xaxis.get_minorticklocs().size
    plt.close(fig)
