"""ONNX export with torch's default (dynamo) exporter and its TorchScript one: one ONNX GRU node per
layer, with linear_before_reset set from reset_after, and the same outputs as grukit in ONNX Runtime
over a grid of shapes, conventions and lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import grukit
from grukit.onnx_export import UnexportableError, default_exporter_available, export

onnx = pytest.importorskip("onnx", reason="ONNX export tests need the onnx extra: pip install 'grukit[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="ONNX export tests need the onnx extra: pip install 'grukit[onnx]'")

# dynamo=True: torch's default exporter (needs onnxscript); dynamo=False: the TorchScript one
DYNAMO = pytest.param(
    True,
    id="dynamo",
    marks=pytest.mark.skipif(
        not default_exporter_available(), reason="torch's default exporter needs onnxscript and torch >= 2.8"
    ),
)
EXPORTERS = [DYNAMO, pytest.param(False, id="torchscript")]


class WithLengths(torch.nn.Module):
    def __init__(self, gru):
        super().__init__()
        self.gru = gru

    def forward(self, x, h0, lengths):
        return self.gru(x, h0, lengths=lengths)


def gru_nodes(path):
    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type == "GRU"]
    return nodes, {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}


CASES = [  # (reset_after, layers, bidirectional, with_lengths, T, B, I, H): every option on and off, three sizes
    (True, 1, False, False, 1, 1, 3, 4),
    (False, 1, False, True, 1, 1, 3, 4),
    (True, 2, False, True, 9, 4, 7, 13),
    (False, 2, False, False, 9, 4, 7, 13),
    (True, 1, True, True, 9, 4, 7, 13),
    (False, 1, True, False, 9, 4, 7, 13),
    (True, 2, True, False, 20, 3, 16, 32),
    (False, 2, True, True, 20, 3, 16, 32),
    (True, 2, True, True, 9, 4, 7, 13),
    (False, 1, False, True, 20, 3, 16, 32),
]


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("reset_after, layers, bidirectional, with_lengths, T, B, I, H", CASES)
def test_onnx_runtime_matches_grukit(tmp_path, dynamo, reset_after, layers, bidirectional, with_lengths, T, B, I, H):
    torch.manual_seed(T * 100 + B)
    gru = grukit.GRU(
        I,
        H,
        num_layers=layers,
        bidirectional=bidirectional,
        reset_after=reset_after,
        dropout=0.3 if layers > 1 else 0.0,
    )
    D = 2 if bidirectional else 1
    x, h0 = torch.randn(T, B, I), torch.randn(layers * D, B, H)
    lengths = torch.randint(1, T + 1, (B,)) if with_lengths else torch.full((B,), T)
    path = export(
        WithLengths(gru),
        (x, h0, lengths),
        tmp_path / "g.onnx",
        input_names=["x", "h0", "lengths"],
        output_names=["y", "h_n"],
        dynamic_axes={"x": {0: "T", 1: "B"}, "h0": {1: "B"}, "lengths": {0: "B"}},
        dynamo=dynamo,
    )
    nodes, attrs = gru_nodes(path)
    assert len(nodes) == layers  # a real GRU operator per layer, not an unrolled loop
    assert attrs["linear_before_reset"] == int(reset_after) and attrs["hidden_size"] == H
    assert attrs["direction"] == (b"bidirectional" if bidirectional else b"forward")
    y, h_n = ort.InferenceSession(str(path)).run(None, {"x": x.numpy(), "h0": h0.numpy(), "lengths": lengths.numpy()})
    gru.eval()
    with torch.no_grad():
        want_y, want_h = gru(x, h0, lengths=lengths)
    np.testing.assert_allclose(y, want_y.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_n, want_h.numpy(), rtol=1e-5, atol=1e-5)


def plain_export(gru, x, path, dynamo: bool) -> None:
    """torch.onnx.export itself, as a user calls it: the default exporter, or dynamo=False."""
    if dynamo:
        torch.onnx.export(gru, (x,), str(path), input_names=["x"], dynamic_shapes=({0: "B", 1: "T"},), verbose=False)
    else:
        torch.onnx.export(gru, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "B", 1: "T"}})


# the default exporter notes a deprecation inside torch (FutureWarning) and that it skips torchvision's ops
@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning", "ignore::FutureWarning", "ignore::UserWarning"
)
@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_plain_export_of_a_gru_and_other_sizes_at_run_time(tmp_path, dynamo):
    gru = grukit.GRU(7, 13, batch_first=True, bias=False).eval()
    x = torch.randn(2, 5, 7)
    path = tmp_path / "plain.onnx"
    plain_export(gru, x, path, dynamo)
    nodes, attrs = gru_nodes(path)
    assert len(nodes) == 1 and attrs["linear_before_reset"] == 1
    assert nodes[0].input[3] == ""  # no bias: ONNX's B omitted (zeros)
    longer = torch.randn(3, 11, 7)  # other batch and length than the example
    y, h_n = ort.InferenceSession(str(path)).run(None, {"x": longer.numpy()})
    with torch.no_grad():
        want_y, want_h = gru(longer)
    np.testing.assert_allclose(y, want_y.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_n, want_h.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning", "ignore::FutureWarning", "ignore::UserWarning"
)
@pytest.mark.parametrize("streamed_first", [False, True], ids=["fresh", "after-a-stream"])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_a_gru_cell_exports_in_plain_operators(tmp_path, dynamo, reset_after, streamed_first):
    """ONNX has no GRU cell operator: the step goes out as ONNX's plain operators, as torch.nn.GRUCell's
    does, and gives grukit's numbers in ONNX Runtime at another batch size. A no-grad stream of steps
    before the export (whose step function no trace can see) must not leak into the graph."""
    torch.manual_seed(3)
    cell = grukit.GRUCell(5, 7, reset_after=reset_after).eval()
    x, h = torch.randn(2, 5), torch.randn(2, 7)
    if streamed_first:
        with torch.no_grad():
            cell(x, cell(x, h))
    path = str(tmp_path / "cell.onnx")
    with torch.no_grad():
        if dynamo:
            torch.onnx.export(cell, (x, h), path, input_names=["x", "h"], dynamic_shapes=({0: "B"}, {0: "B"}))
        else:
            torch.onnx.export(
                cell, (x, h), path, dynamo=False, input_names=["x", "h"], dynamic_axes={"x": {0: "B"}, "h": {0: "B"}}
            )
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "Sigmoid" in ops and "Tanh" in ops and not any("grukit" in op for op in ops)
    x2, h2 = torch.randn(4, 5), torch.randn(4, 7)
    (got,) = ort.InferenceSession(path).run(None, {"x": x2.numpy(), "h": h2.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, cell(x2, h2).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("option, value", [("layer_norm", True), ("zoneout", 0.1), ("recurrent_dropout", 0.2)])
def test_options_onnx_cannot_express_are_named(tmp_path, dynamo, option, value):
    gru = grukit.GRU(3, 4, **{option: value})
    with pytest.raises(UnexportableError, match=f"ONNX's GRU operator cannot express {option}="):
        export(gru, (torch.randn(2, 1, 3),), tmp_path / "x.onnx", dynamo=dynamo)


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_mingru_is_refused_by_both_exporters(tmp_path, dynamo):
    class Model(torch.nn.Module):  # the TorchScript exporter passes every default positionally: lengths is keyword only
        def __init__(self):
            super().__init__()
            self.rnn = grukit.MinGRU(3, 4)

        def forward(self, x):
            return self.rnn(x)

    with pytest.raises(UnexportableError, match="ONNX has no minGRU operator"):
        export(Model(), (torch.randn(2, 1, 3),), tmp_path / "x.onnx", dynamo=dynamo)


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning", "ignore::FutureWarning", "ignore::UserWarning"
)
@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_plain_export_names_the_option_too(tmp_path, dynamo):
    """torch.onnx.export itself: the exporter's error (the default one wraps grukit's) names the option."""
    gru = grukit.GRU(3, 4, zoneout=0.1).eval()
    with pytest.raises(Exception, match=r"ONNX's GRU operator cannot express zoneout=0\.1"):
        plain_export(gru, torch.randn(2, 1, 3), tmp_path / "x.onnx", dynamo)


@pytest.mark.parametrize(
    "task, args",
    [
        ("adding", ["--epochs", "1", "--steps", "5", "--eval-pairs", "20", "--hidden-size", "4"]),
        ("classify", ["--dataset", "toy", "--epochs", "1", "--hidden-size", "4", "--batch-size", "64"]),
        (
            "regress",
            ["--epochs", "1", "--hidden-size", "4", "--skip", "linear", "--ensemble", "2", "--blend-linear", "0.25"],
        ),
        (
            "lm",
            [
                "--epochs",
                "1",
                "--steps",
                "2",
                "--batch-size",
                "4",
                "--seq-len",
                "16",
                "--hidden-size",
                "8",
                "--embedding-size",
                "4",
                "--max-chars",
                "20000",
            ],
        ),
    ],
)
def test_export_a_trained_run(tmp_path, task, args):
    from click.testing import CliRunner

    from grukit.cli import main

    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", task, "--out", str(out), "--no-progress", *args])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["export", str(out), "--format", "onnx"])
    assert r.exit_code == 0, r.output
    assert r.output.count("\n") == 1  # one line: not the exporter's progress notes
    used = "dynamo" if default_exporter_available() else "torchscript"  # auto: the default exporter where it runs
    assert f"({used} exporter); ONNX Runtime matches PyTorch within" in r.output and (out / "model.onnx").is_file()
    assert len(gru_nodes(out / "model.onnx")[0]) >= 1
    old = tmp_path / "old.onnx"
    r = CliRunner().invoke(main, ["export", str(out), "--exporter", "torchscript", "--to", str(old)])
    assert r.exit_code == 0 and "(torchscript exporter)" in r.output, r.output
    assert len(gru_nodes(old)[0]) == len(gru_nodes(out / "model.onnx")[0])


@pytest.mark.parametrize(
    "cell, message",
    [("lngru", "ONNX's GRU operator cannot express layer_norm=True"), ("mingru", "ONNX has no minGRU operator")],
)
def test_export_refuses_what_onnx_cannot_express(tmp_path, cell, message):
    from click.testing import CliRunner

    from grukit.cli import main

    out = tmp_path / "run"
    r = CliRunner().invoke(
        main,
        [
            "train",
            "adding",
            "--out",
            str(out),
            "--no-progress",
            "--epochs",
            "1",
            "--steps",
            "3",
            "--eval-pairs",
            "10",
            "--hidden-size",
            "4",
            "--cell",
            cell,
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["export", str(out)])
    assert r.exit_code == 1 and r.output.startswith(f"Error: {message}") and r.output.count("\n") == 1
