"""Time grukit.GRU's cell options: a benchmark, not timed tests.

Three sections, each interleaved in one process with :func:`grukit.bench.rounds`
(ratios are medians over rounds of back-to-back times, as in :mod:`grukit.bench`):

    layer_norm  GRU(layer_norm=True) vs the plain GRU, same weights, inference
                and training: lngru time / plain time (target <= 1.3x).
    baseline    a LayerNorm-GRU written the way users write it today (an
                nn.Module cell with two nn.LayerNorm, called in a Python loop
                over time) vs GRU(layer_norm=True): baseline time / lngru time
                (target per shape). Before timing, the baseline gets grukit's
                weights and must give grukit's outputs (float32, atol 1e-4).
    options     zoneout, recurrent_dropout, weight_dropout (each alone),
                training, vs the plain GRU: option time / plain time (<= 1.15x).

The ratios measure whatever grukit.GRU runs for an option on this machine: the
native kernel where it has one, else the readable reference. Shapes legend as
in :mod:`grukit.bench`.

    res = run(CELLS)                # or QUICK_CELLS for a smoke run
    print(format_table(res))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from . import backend
from .bench import GRID, QUICK, Config, _infer, _loadavg, _summary, _train, machine, machine_line, rounds
from .modules import GRU

ATOL = 1e-4  # max |baseline - grukit| over output and h_n, float32, before any timing


@dataclass(frozen=True)
class CellsGrid:
    """The shapes and targets of the three sections."""

    layer_norm: tuple[Config, ...] = GRID + (Config(200, 8, 40, 64),)  # LayerNorm-GRU vs plain GRU
    layer_norm_max: float = 1.3  # lngru / plain, inference and training, on every shape
    baseline: tuple[tuple[Config, float], ...] = (  # (shape, least baseline / lngru) for the user-style baseline
        (Config(200, 8, 40, 64), 10.0),
        (Config(1000, 1, 64, 256), 10.0),
        (Config(100, 32, 64, 256), 2.0),
    )
    options: tuple[Config, ...] = GRID  # shapes of the dropout / zoneout options (training)
    option_values: tuple[tuple[str, float], ...] = (
        ("zoneout", 0.1),
        ("recurrent_dropout", 0.25),
        ("weight_dropout", 0.25),
    )
    option_max: float = 1.15  # option / plain, training


CELLS = CellsGrid()
QUICK_CELLS = CellsGrid(layer_norm=QUICK, baseline=((QUICK[0], 10.0),), options=QUICK)


class BaselineMismatch(AssertionError):
    """The user-style baseline does not compute grukit's LayerNorm-GRU: its speed-up would compare different functions."""


class UserLayerNormGRUCell(nn.Module):
    """A LayerNorm-GRU step as users write it: nn.Linear, two nn.LayerNorm, the gates.

    The same function as grukit's (see grukit.functional.layernorm)::

        gi = LN(W x; g_ih, c_ih) + b_ih,  gh = LN(U h; g_hh, c_hh) + b_hh      (B, 3H), norm over 3H
        r = sigmoid(gi_r + gh_r),  z = sigmoid(gi_z + gh_z),  n = tanh(gi_n + r * gh_n)
        h' = (1 - z) * n + z * h
    """

    eps = 1e-5  # nn.LayerNorm's default, as grukit

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        G = 3 * hidden_size
        self.ih, self.hh = nn.Linear(input_size, G, bias=False), nn.Linear(hidden_size, G, bias=False)
        self.ln_ih, self.ln_hh = nn.LayerNorm(G, eps=self.eps), nn.LayerNorm(G, eps=self.eps)
        self.b_ih, self.b_hh = nn.Parameter(torch.zeros(G)), nn.Parameter(torch.zeros(G))

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        gi = self.ln_ih(self.ih(x)) + self.b_ih  # (B, 3H)
        gh = self.ln_hh(self.hh(h)) + self.b_hh  # (B, 3H)
        i_r, i_z, i_n = gi.chunk(3, -1)  # (B, H) each
        h_r, h_z, h_n = gh.chunk(3, -1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h  # (B, H)


class UserLayerNormGRU(nn.Module):
    """The cell in a Python loop over time: x (T, B, I) -> output (T, B, H), h_n (1, B, H).

    As a cell is used: W x_t is computed step by step inside the loop.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = UserLayerNormGRUCell(input_size, hidden_size)
        self.hidden_size = hidden_size

    def forward(self, x: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = x.new_zeros(x.shape[1], self.hidden_size) if hx is None else hx[0]  # (B, H)
        outputs = []
        for x_t in x:  # (B, I)
            h = self.cell(x_t, h)
            outputs.append(h)
        return torch.stack(outputs), h.unsqueeze(0)  # (T, B, H), (1, B, H)

    @classmethod
    def from_grukit(cls, gru: GRU) -> UserLayerNormGRU:
        """The same weights as a one-layer, one-direction GRU(layer_norm=True)."""
        if not gru.layer_norm or gru.num_layers != 1 or gru.bidirectional or not gru.bias:
            raise ValueError(
                f"the baseline mirrors a 1-layer, 1-direction LayerNorm-GRU with biases, got GRU({gru.extra_repr()})"
            )
        user = cls(gru.input_size, gru.hidden_size)
        c = user.cell
        pairs = (
            (c.ih.weight, "weight_ih_l0"),
            (c.hh.weight, "weight_hh_l0"),
            (c.b_ih, "bias_ih_l0"),
            (c.b_hh, "bias_hh_l0"),
            (c.ln_ih.weight, "ln_gain_ih_l0"),
            (c.ln_ih.bias, "ln_bias_ih_l0"),
            (c.ln_hh.weight, "ln_gain_hh_l0"),
            (c.ln_hh.bias, "ln_bias_hh_l0"),
        )
        with torch.no_grad():
            for p, name in pairs:
                p.copy_(getattr(gru, name))
        return user.to(gru.weight_ih_l0.dtype)


def _plain(cfg: Config, seed: int = 0, **options) -> GRU:
    torch.manual_seed(seed)
    return GRU(cfg.I, cfg.H, cfg.L, bidirectional=cfg.bidirectional, **options)


def _lngru(cfg: Config, plain: GRU, seed: int = 1) -> GRU:
    """GRU(layer_norm=True) with plain's weights and gains / biases of the norms away from 1 / 0 (a sharper equality check)."""
    ln = GRU(cfg.I, cfg.H, cfg.L, bidirectional=cfg.bidirectional, layer_norm=True)
    missing = ln.load_state_dict(plain.state_dict(), strict=False).missing_keys
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in missing:
            p = getattr(ln, name)
            p.copy_((1.0 if "gain" in name else 0.0) + 0.2 * torch.randn(p.shape, generator=gen))
    return ln


def check_baseline(user: nn.Module, lngru: GRU, x: Tensor, atol: float = ATOL) -> float:
    """Max |user - lngru| over output and h_n on x; raises :class:`BaselineMismatch` above atol."""
    with torch.no_grad():
        (out_u, h_u), (out_g, h_g) = user(x), lngru(x)
    diff = max((out_u - out_g).abs().max().item(), (h_u - h_g).abs().max().item())
    if not diff <= atol:  # also catches NaN
        raise BaselineMismatch(
            f"the user-style LayerNorm-GRU baseline does not compute grukit's LayerNorm-GRU at T{x.shape[0]} B{x.shape[1]}: "
            f"max |difference| {diff:.3g} > atol {atol:g} on output / h_n; fix the baseline before timing it"
        )
    return diff


def _data(cfg: Config) -> tuple[Tensor, Tensor]:
    D = 2 if cfg.bidirectional else 1
    return torch.randn(cfg.T, cfg.B, cfg.I), torch.randn(
        cfg.T, cfg.B, D * cfg.H
    )  # x (T, B, I), grad of the output (T, B, D*H)


def _ms(t: float) -> float:
    return 1e3 * t


def time_layer_norm(cfg: Config, *, min_time: float = 0.5) -> dict:
    """(a) GRU(layer_norm=True) vs the plain GRU, same weights: lngru / plain, inference and training."""
    plain = _plain(cfg)
    ln = _lngru(cfg, plain)
    x, g = _data(cfg)
    row = {"config": cfg.name, **asdict(cfg), "backend": backend.active(x, plain.weight_ih_l0)}
    for mode, step in (("infer", lambda m: _infer(m, x)), ("train", lambda m: _train(m, x, g))):
        (t_ln, t_plain), (ratio,) = _summary(rounds([step(ln), step(plain)], min_time=min_time))
        row.update({f"{mode}_plain_ms": _ms(t_plain), f"{mode}_lngru_ms": _ms(t_ln), f"{mode}_ratio": ratio})
    return row


def checked_baseline(cfg: Config) -> tuple[UserLayerNormGRU, GRU, Tensor, Tensor, float]:
    """The baseline, GRU(layer_norm=True) with the same weights, x, the output gradient, and their checked max |difference|."""
    ln = _lngru(cfg, _plain(cfg))
    user = UserLayerNormGRU.from_grukit(ln)
    x, g = _data(cfg)
    return user, ln, x, g, check_baseline(user, ln, x)


def time_baseline(cfg: Config, target: float, *, min_time: float = 0.5) -> dict:
    """(b) the user-style baseline vs GRU(layer_norm=True), checked equal first: baseline / lngru."""
    user, ln, x, g, diff = checked_baseline(cfg)
    row = {"config": cfg.name, **asdict(cfg), "target_min": target, "max_abs_diff": diff}
    for mode, step in (("infer", lambda m: _infer(m, x)), ("train", lambda m: _train(m, x, g))):
        (t_user, t_ln), (ratio,) = _summary(rounds([step(user), step(ln)], min_time=min_time))
        row.update({f"{mode}_baseline_ms": _ms(t_user), f"{mode}_lngru_ms": _ms(t_ln), f"{mode}_ratio": ratio})
    row["met"] = min(row["infer_ratio"], row["train_ratio"]) >= target
    return row


def time_options(cfg: Config, values: tuple[tuple[str, float], ...], *, min_time: float = 0.5) -> list[dict]:
    """(c) each option alone vs the plain GRU, same weights, training mode, forward + backward: option / plain."""
    plain = _plain(cfg)
    models = [_plain(cfg, 0, **{name: p}) for name, p in values]  # same seed: same weights
    x, g = _data(cfg)
    times = rounds([_train(m, x, g) for m in (plain, *models)], min_time=min_time)
    rows = []
    for (name, p), ts in zip(values, times[1:]):
        (t_opt, t_plain), (ratio,) = _summary([ts, times[0]])
        rows.append(
            {
                "config": cfg.name,
                **asdict(cfg),
                "option": name,
                "p": p,
                "train_plain_ms": _ms(t_plain),
                "train_option_ms": _ms(t_opt),
                "train_ratio": ratio,
            }
        )
    return rows


def run(grid: CellsGrid = CELLS, *, min_time: float = 0.5, progress: Callable[[str], None] | None = None) -> dict:
    """All three sections; JSON-serialisable."""
    say = progress or (lambda _msg: None)
    load_before = _loadavg()
    for cfg, _ in grid.baseline:  # a wrong baseline stops the run before any timing, not after (a)
        say(f"checking the baseline at {cfg.name}")
        checked_baseline(cfg)
    ln_rows, base_rows, opt_rows = [], [], []
    for cfg in grid.layer_norm:
        say(f"layer_norm {cfg.name}")
        ln_rows.append(time_layer_norm(cfg, min_time=min_time))
    for cfg, target in grid.baseline:
        say(f"baseline {cfg.name}")
        base_rows.append(time_baseline(cfg, target, min_time=min_time))
    for cfg in grid.options:
        say(f"options {cfg.name}")
        opt_rows += time_options(cfg, grid.option_values, min_time=min_time)
    ln_worst = max((max(r["infer_ratio"], r["train_ratio"]) for r in ln_rows), default=float("nan"))
    opt_worst = max((r["train_ratio"] for r in opt_rows), default=float("nan"))
    return {
        "machine": machine(load_before),
        "layer_norm": {
            "target_max": grid.layer_norm_max,
            "worst": ln_worst,
            "met": ln_worst <= grid.layer_norm_max,
            "rows": ln_rows,
        },
        "baseline": {"atol": ATOL, "met": all(r["met"] for r in base_rows), "rows": base_rows},
        "options": {
            "target_max": grid.option_max,
            "worst": opt_worst,
            "met": opt_worst <= grid.option_max,
            "rows": opt_rows,
        },
    }


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def format_table(res: dict) -> str:
    """The three sections as fixed-width text, each with its target and whether it is met."""
    lines = [machine_line(res["machine"]), ""]
    s = res["layer_norm"]
    lines.append(
        f"(a) LayerNorm-GRU / plain grukit.GRU, same weights (target <= {s['target_max']:.2f}x everywhere: {_met(s['met'])})"
    )
    head = f"{'config':<28}{'infer plain':>12}{'lngru':>9}{'ratio':>7}{'train plain':>13}{'lngru':>9}{'ratio':>7}"
    lines += [head, "-" * len(head)]
    for r in s["rows"]:
        lines.append(
            f"{r['config']:<28}{r['infer_plain_ms']:>10.2f}ms{r['infer_lngru_ms']:>7.2f}ms{r['infer_ratio']:>6.2f}x"
            f"{r['train_plain_ms']:>11.2f}ms{r['train_lngru_ms']:>7.2f}ms{r['train_ratio']:>6.2f}x"
        )
    s = res["baseline"]
    lines += [
        "",
        f"(b) user-style LayerNorm-GRU (Python loop, nn.LayerNorm) / grukit, outputs equal to atol {s['atol']:g} (targets per shape: {_met(s['met'])})",
    ]
    head = f"{'config':<28}{'infer user':>12}{'grukit':>9}{'ratio':>8}{'train user':>12}{'grukit':>9}{'ratio':>8}{'target':>8}{'':>9}"
    lines += [head, "-" * len(head)]
    for r in s["rows"]:
        lines.append(
            f"{r['config']:<28}{r['infer_baseline_ms']:>10.1f}ms{r['infer_lngru_ms']:>7.2f}ms{r['infer_ratio']:>7.1f}x"
            f"{r['train_baseline_ms']:>10.1f}ms{r['train_lngru_ms']:>7.2f}ms{r['train_ratio']:>7.1f}x{'>=' + format(r['target_min'], '.0f') + 'x':>8}{_met(r['met']):>9}"
        )
    s = res["options"]
    lines += [
        "",
        f"(c) training with one option / plain grukit.GRU training (target <= {s['target_max']:.2f}x everywhere: {_met(s['met'])})",
    ]
    head = f"{'config':<28}{'option':<24}{'plain':>10}{'option':>10}{'ratio':>7}"
    lines += [head, "-" * len(head)]
    for r in s["rows"]:
        lines.append(
            f"{r['config']:<28}{r['option'] + '=' + format(r['p'], 'g'):<24}{r['train_plain_ms']:>8.2f}ms{r['train_option_ms']:>8.2f}ms{r['train_ratio']:>6.2f}x"
        )
    return "\n".join(lines)


def plot(res: dict, path: str) -> None:
    """One panel per section: the ratios per config, the target as a dashed line (PNG)."""
    from .figures import new_figure, save_figure

    ln, base, opt = res["layer_norm"]["rows"], res["baseline"]["rows"], res["options"]["rows"]
    panels = (
        (
            "(a) LayerNorm-GRU / plain GRU",
            [r["config"] for r in ln],
            {"inference": [r["infer_ratio"] for r in ln], "training": [r["train_ratio"] for r in ln]},
            [res["layer_norm"]["target_max"]],
        ),
        (
            "(b) user-style LayerNorm-GRU / grukit",
            [r["config"] for r in base],
            {"inference": [r["infer_ratio"] for r in base], "training": [r["train_ratio"] for r in base]},
            sorted({r["target_min"] for r in base}),
        ),
        (
            "(c) option / plain GRU, training",
            [f"{r['config']} {r['option']}" for r in opt],
            {"training": [r["train_ratio"] for r in opt]},
            [res["options"]["target_max"]],
        ),
    )
    heights = [len(p[1]) + 1.5 for p in panels]
    fig, axes = new_figure((10, 0.4 * sum(heights) + 1.5), nrows=3, ncols=1, gridspec_kw={"height_ratios": heights})
    for ax, (title, names, series, targets) in zip(axes, panels):
        y = list(range(len(names)))
        w = 0.8 / len(series)
        for k, (label, values) in enumerate(series.items()):
            ax.barh([i + (k - (len(series) - 1) / 2) * w for i in y], values, height=w, label=label)
        ax.axvline(1.0, color="grey", lw=0.6)
        for t in targets:
            ax.axvline(t, color="k", lw=0.8, ls="--")
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title + " (dashed: target)", fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"grukit cell options: {res['machine']['cpu']}, {res['machine']['threads']} threads, torch {res['machine']['torch']}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the suptitle above the first panel
    save_figure(fig, path, dpi=110)
