"""`grukit bench --peers`: every installed engine computes torch.nn.GRU's function, the check catches one that does not,
the ONNX graph is a real GRU node per layer, and the results (JSON, table, plot, CLI) hold what they claim. No timing claims."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import torch
from click.testing import CliRunner

from grukit import bench_peers
from grukit.bench import Config
from grukit.bench_peers import engines as E
from grukit.bench_peers import runner
from grukit.bench_peers.jax_engine import JaxWorker, jax_engine
from grukit.bench_peers.onnx_engines import export_onnx, gru_nodes
from grukit.cli.main import main

TINY = Config(5, 3, 4, 6)
TINY_BI = Config(
    4, 2, 3, 5, L=2, bidirectional=True
)  # two layers, two directions: every engine's layer and direction order
PEERS = ("grukit", "grukit-bf16", "onnxruntime", "openvino", "openvino-bf16", "jax", "keras")


@pytest.fixture(autouse=True)
def one_thread():  # tiny ops on a loaded machine: two OpenMP threads can wait far longer than they compute
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def jax_worker():
    try:
        worker = JaxWorker(1)
    except E.Missing as e:
        pytest.skip(str(e))
    yield worker
    worker.close()


def _engine(name: str, case: E.Case, request) -> E.Engine:
    """One engine for this case, or a skip that says how to install it."""
    jax = request.getfixturevalue("jax_worker") if name == "jax" else None
    skipped: dict[str, str] = {}
    built = runner.build(case, [name], jax, skipped)
    if name in skipped:
        pytest.skip(f"{name}: {skipped[name]}")
    return built[-1]


@pytest.mark.parametrize("name", PEERS)
def test_engine_computes_torch_gru(name, request):
    cfg = TINY_BI
    case = E.make_case(cfg, threads=1)
    engine = _engine(name, case, request)
    ref = E.torch_engine(case)
    errs = runner.check(engine, ref.outputs(), ref.grads(), cfg)
    assert errs["output"] <= runner.RTOL[engine.precision]
    assert ("grads" in errs) == (
        engine.train is not None
    )  # every engine that is timed training had its gradients checked
    assert ("h_n" in errs) == (name != "keras")


@pytest.mark.parametrize("name", PEERS)
def test_check_refuses_an_engine_given_other_weights(name, request):
    case = E.make_case(TINY_BI, threads=1)
    engine = _engine(name, case, request)  # built from the original weights
    with torch.no_grad():
        if engine.precision == "fp32":
            case.ref.weight_hh_l1_reverse[0, 0] += 0.01  # one weight, last layer, backward direction
        else:
            case.ref.weight_hh_l1_reverse.neg_()  # past bf16's tolerance
    ref = E.torch_engine(case)
    with pytest.raises(
        runner.PeerMismatch,
        match=rf"{name} does not compute torch.nn.GRU at {TINY_BI.name}: max relative \|difference\|",
    ):
        runner.check(engine, ref.outputs(), ref.grads(), TINY_BI)


@pytest.mark.parametrize("cfg", [TINY, TINY_BI], ids=lambda c: c.name)
def test_onnx_graph_has_one_gru_node_per_layer(cfg):
    pytest.importorskip("onnx", reason=f"onnx is not installed: {E.BENCH_EXTRA}")
    ops, grus = gru_nodes(export_onnx(E.make_case(cfg, threads=1)))
    assert ops.count("GRU") == cfg.L and "Loop" not in ops and "Scan" not in ops
    for attrs in grus:
        assert attrs["linear_before_reset"] == 1 and attrs["hidden_size"] == cfg.H
        assert attrs.get("direction", b"forward") == (b"bidirectional" if cfg.bidirectional else b"forward")


def test_run_json_ratios_are_from_the_medians(tmp_path):
    res = bench_peers.run(
        [TINY], threads=(1,), engines=("torch", "grukit", "grukit-bf16"), min_time=0.0, peak_sizes=(64,)
    )
    res = json.loads(json.dumps(res))  # JSON as written
    assert {"machine", "engines", "skipped", "fp32_matmul_peak_gflops", "rows", "summary"} <= set(res)
    assert set(res["engines"]) == {"torch", "grukit", "grukit-bf16"} and res["skipped"] == {}
    assert [(r["mode"], r["threads"]) for r in res["rows"]] == [("infer", 1), ("train", 1)]
    for r in res["rows"]:
        assert r["config"] == TINY.name and set(r["ms"]) == {"torch", "grukit", "grukit-bf16"}
        for e in ("grukit", "grukit-bf16"):
            assert r["ratio"][e] == pytest.approx(r["ms"]["torch"] / r["ms"][e], rel=1e-12)
            assert r["paired_ratio"][e] > 0 and r["peak_frac"][e] > 0
            assert r["peak_frac"][e] == pytest.approx(
                r["flops"] / (r["best_ms"][e] / 1e3) / (res["fp32_matmul_peak_gflops"]["1"] * 1e9)
            )
        assert res["fp32_matmul_peak_gflops"]["1"] == max(res["fp32_matmul_peak_gflops_before_after"]["1"])
        geo = res["summary"]["geomean_ratio"][f"{r['mode']} 1t"]
        assert geo["grukit"] == pytest.approx(r["ratio"]["grukit"])  # one config: the mean is the ratio
    table = bench_peers.format_table(res)
    assert "geometric mean" in table and "inference, 1 thread" in table and "training, 1 thread" in table
    bench_peers.plot(res, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 0


def test_summary_is_the_geometric_mean():
    rows = [{"mode": "infer", "threads": 2, "large": False, "ratio": {"jax": a}, "peak_frac": {}} for a in (0.5, 8.0)]
    assert runner.summary(rows)["geomean_ratio"]["infer 2t"]["jax"] == pytest.approx(2.0)


def test_missing_engines_are_skipped_with_their_install_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "openvino", None)
    res = bench_peers.run(
        [TINY], threads=(1,), engines=("torch", "onnxruntime", "openvino"), min_time=0.0, peak_sizes=(64,)
    )
    for name in ("onnxruntime", "openvino"):
        assert res["skipped"][name] == f"{name} is not installed: pip install 'grukit[bench]'"
        assert all(name not in r["ms"] for r in res["rows"])
    assert (
        "onnxruntime   skipped: onnxruntime is not installed: pip install 'grukit[bench]'"
        in bench_peers.format_table(res)
    )
    fake = tmp_path / "jax"  # a jax that cannot be imported, seen by the worker process only
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no jax here')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(E.Missing, match=r"jax is not installed: pip install 'grukit\[bench\]'"):
        JaxWorker(1)


def test_jax_worker_runs_on_the_cores_it_was_given(jax_worker):
    assert jax_worker.cores == [min(os.sched_getaffinity(0))]
    case = E.make_case(TINY_BI, threads=1)  # the shape the other JAX tests compiled
    engine = jax_engine(jax_worker, case)
    assert isinstance(engine.infer(), float) and engine.infer() > 0 and math.isfinite(engine.train())


def test_cli_peers_quick(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_peers, "QUICK_PEERS", (TINY,))
    monkeypatch.setattr(
        bench_peers, "ENGINES", ("torch", "grukit", "onnxruntime")
    )  # the flag's path; engines have their own tests
    out = tmp_path / "peers.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "--peers",
            "--quick",
            "--threads",
            "1",
            "--min-time",
            "0.001",
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "p.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "inference, 1 thread" in result.output and "geometric mean" in result.output
    data = json.loads(out.read_text())
    assert data["machine"]["threads"] == [1] and {r["threads"] for r in data["rows"]} == {1}
    assert set(data["engines"]) | set(data["skipped"]) == {"torch", "grukit", "onnxruntime"}
    assert (tmp_path / "p.png").stat().st_size > 0


def test_cli_peers_and_cells_together_is_a_usage_error():
    result = CliRunner().invoke(main, ["bench", "--peers", "--cells"])
    assert result.exit_code == 2 and "--cells, --peers and --contention are separate benchmarks" in result.output
