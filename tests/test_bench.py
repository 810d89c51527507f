"""The benchmark runs end to end on a tiny grid and writes its table, JSON and plot."""

from __future__ import annotations

import json

from click.testing import CliRunner

from grukit import bench
from grukit.cli.main import main


def test_bench_library_tiny_grid(tmp_path):
    res = bench.run((bench.Config(3, 2, 2, 4), bench.Config(2, 2, 2, 3, L=2, bidirectional=True)), cells=((2, 4),), min_time=0.0, peak_sizes=(64,))
    assert {r["config"] for r in res["fp32"]} == {"T3 B2 I2 H4", "T2 B2 I2 H3 L2 bi"}
    for r in res["fp32"]:
        assert r["infer_ratio"] > 0 and r["train_ratio"] > 0 and r["bf16_train_ratio"] > 0
    table = bench.format_table(res)
    assert "geometric mean" in table and "cell B1 I2 H4" in table
    bench.plot(res, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 0


def test_flops_count_gemms():
    cfg = bench.Config(10, 2, 3, 4)  # T B I H: rows T*B = 20, gate columns 3H = 12
    assert cfg.flops(False) == 2 * 20 * 12 * (3 + 4)
    # training: recurrent part x 3 (forward, dW, dh); input part x 2 (no dx for the benchmark's x)
    assert cfg.flops(True) == 2 * 20 * 12 * (3 * 4 + 2 * 3)
    two = bench.Config(10, 2, 3, 4, L=2, bidirectional=True)  # layer 2: input 2H = 8, and it needs dx
    assert two.flops(False) == 2 * (2 * 20 * 12 * (3 + 4) + 2 * 20 * 12 * (8 + 4))
    assert two.flops(True) == 2 * (2 * 20 * 12 * (3 * 4 + 2 * 3) + 2 * 20 * 12 * (3 * 4 + 3 * 8))


def test_bench_cli_quick(tmp_path):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["bench", "--quick", "--min-time", "0.001", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "geometric mean" in result.output
    data = json.loads(out.read_text())
    assert data["summary"]["train_geomean"] > 0
