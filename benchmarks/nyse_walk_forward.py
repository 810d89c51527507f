"""NYSE: choose between the validation protocols on the training years alone.

ISLP's training days (1962-1979) are cut in time: the first 80% of them become the
days to fit and validate on, the last 20% (856 sequences, mid-1976 to 1979) a
stand-in test. For each protocol (random validation days, or ``--val-split last``)
and seed, ``grukit train regress --dataset nyse_day`` runs with the README's chosen
flags and ``--refit`` on that cut table, with AR + day_of_week fitted in the same
run on the same days; the test years 1980-1986 are never read. Prints R^2 on the
stand-in test per run and the means (README: "Choosing the protocol without the
test days").

    python benchmarks/nyse_walk_forward.py --seeds 0 1 2 3 4 --out runs/walk-forward

With ``--blend``, the same cut chooses the weight of ``--blend-linear`` instead:
each seed trains the chosen flags once (random validation days, no refit) with a
ridge kept in the run, and the stand-in test R^2 of ``(1 - W) * GRU + W * ridge`` is
printed for W = 0, 0.05, ..., 1, with the W of the best mean over the seeds (README:
"Averaging the GRU with the linear AR").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from grukit.cli.main import main as cli
from grukit.data import stocks

FLAGS = ["--pooling", "last", "--hidden-size", "16", "--epochs", "60", "--lr", "1e-3"]
FLAGS += ["--skip", "linear", "--ensemble", "10", "--refit"]
PROTOCOLS = {"random": [], "last": ["--val-split", "last"]}
_real_load = stocks.load_nyse


def training_years(what: str = "--dataset nyse") -> stocks.NyseTable:
    """ISLP's training days only, the last 20% of them flagged as the test part."""
    table = _real_load(what)
    keep = np.nonzero(table.train)[0]
    flag = np.arange(len(keep)) < round(len(keep) * 0.8)
    return dataclasses.replace(
        table,
        dates=tuple(table.dates[i] for i in keep),
        values=table.values[keep],
        weekday=table.weekday[keep],
        train=flag,
        source=f"{table.source} (training years, cut 80/20 in time)",
    )


def blend_curves(seeds: list[int], out: Path) -> None:
    """Stand-in test R^2 of the GRU averaged with the ridge, per weight and seed; the best mean weight."""
    from grukit.evaluation import regression
    from grukit.tasks.regress import RegressTask, predict_values

    task, weights = RegressTask(), [round(0.05 * k, 2) for k in range(21)]
    flags = [f for f in FLAGS if f != "--refit"] + ["--blend-linear", "0.5"]  # any W > 0 keeps the ridge
    curves = []
    for seed in seeds:
        run = out / f"blend-{seed}"
        cmd = ["train", "regress", "--dataset", "nyse_day", "--seed", str(seed), "--out", str(run)]
        cli.main(args=cmd + flags, standalone_mode=False)
        cfg, state, model = task.load(run)
        _, data = task.prepare(cfg, task.load_data(cfg))
        x, ln, _ = data["test"]
        assert state.blend is not None
        curve = [
            regression.scores(data["y_test"], predict_values(model, x, ln, state, {**state.blend, "weight": w}))["r2"]
            for w in weights
        ]
        curves.append(curve)
        print(f"seed {seed}: " + ", ".join(f"W {w:g} {r:.4f}" for w, r in zip(weights, curve)))
    means = [statistics.mean(c[k] for c in curves) for k in range(len(weights))]
    best = max(range(len(weights)), key=means.__getitem__)
    print("mean: " + ", ".join(f"W {w:g} {r:.4f}" for w, r in zip(weights, means)))
    print(f"best mean stand-in R^2 {means[best]:.4f} at --blend-linear {weights[best]:g} (GRU alone {means[0]:.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("runs/walk-forward"))
    parser.add_argument("--blend", action="store_true", help="choose the --blend-linear weight instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stocks.load_nyse = training_years  # the regress task and its AR baselines read the cut table
    if args.blend:
        blend_curves(args.seeds, args.out)
        return
    scores: dict[str, list[tuple[float, float, float]]] = {p: [] for p in PROTOCOLS}
    for protocol, extra in PROTOCOLS.items():
        for seed in args.seeds:
            out = args.out / f"{protocol}-{seed}"
            cmd = ["train", "regress", "--dataset", "nyse_day", "--seed", str(seed), "--out", str(out)]
            cli.main(args=cmd + FLAGS + extra, standalone_mode=False)
            m = json.loads((out / "metrics.json").read_text())
            row = (m["r2"], m["refit"]["without_refit"]["r2"], m["baselines"]["ar_day"]["r2"])
            scores[protocol].append(row)
            print(f"{protocol} seed {seed}: refit {row[0]:.4f}, without refit {row[1]:.4f}, AR + day {row[2]:.4f}")
    for protocol, rows in scores.items():
        refit, without = statistics.mean(r[0] for r in rows), statistics.mean(r[1] for r in rows)
        print(f"{protocol}: stand-in test R^2 with --refit {refit:.4f}, without {without:.4f}")


if __name__ == "__main__":
    main()
