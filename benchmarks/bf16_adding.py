"""The adding task's loss curve in bfloat16 against float32, same seed.

    python benchmarks/bf16_adding.py [--out runs/bf16-adding] [--plot benchmarks/results/adding-bf16-vs-fp32.png]

Runs `grukit train adding --dtype D` for float32 and bfloat16 (the default
configuration otherwise), prints both curves epoch by epoch with their largest
relative difference, and draws them on one plot.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def curve(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bf16-adding", help="folder for the two runs")
    ap.add_argument("--plot", default="benchmarks/results/adding-bf16-vs-fp32.png", help="PNG to write")
    args = ap.parse_args()
    runs = {}
    for dtype in ("float32", "bfloat16"):
        runs[dtype] = Path(args.out) / dtype
        cmd = [
            sys.executable,
            "-m",
            "grukit",
            "train",
            "adding",
            "--out",
            str(runs[dtype]),
            "--dtype",
            dtype,
            "--no-progress",
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    a, b = curve(runs["float32"]), curve(runs["bfloat16"])
    print(f"{'epoch':>5} {'train fp32':>12} {'train bf16':>12} {'val fp32':>12} {'val bf16':>12}")
    worst = 0.0
    for ha, hb in zip(a, b):
        print(
            f"{ha['epoch']:>5} {ha['train_loss']:>12.6f} {hb['train_loss']:>12.6f} {ha['val_loss']:>12.6f} {hb['val_loss']:>12.6f}"
        )
        for key in ("train_loss", "val_loss"):
            worst = max(worst, abs(hb[key] - ha[key]) / ha[key])
    print(f"largest relative difference between the curves: {100 * worst:.2f}%")
    for dtype, run in runs.items():
        m = json.loads((run / "metrics.json").read_text())
        print(
            f"{dtype}: exact sums {m['accuracy']:.3f} (8-bit held out), {m['accuracy_by_bits']['64']:.3f} (64-bit); {m['train_seconds']} s"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for hist, dtype, style in ((a, "float32", "-"), (b, "bfloat16", "--")):
        epochs = [h["epoch"] + 1 for h in hist]
        ax.plot(epochs, [h["train_loss"] for h in hist], style, marker="o", label=f"train, {dtype}")
        ax.plot(epochs, [h["val_loss"] for h in hist], style, marker="s", label=f"validation, {dtype}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("binary cross-entropy")
    ax.set_title(f"adding task, same seed: bfloat16 GRU vs float32 (largest difference {100 * worst:.2f}%)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
