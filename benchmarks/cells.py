"""Every cell on the same runs; prints the README's Cells table.

    python benchmarks/cells.py [--out runs/cells] [--only CELL ...]

Each run is `grukit train TASK ... --cell CELL --out DIR --no-progress` in a
fresh process, with the same flags for every cell (RUNS). Times are
train_seconds from metrics.json: training and scoring, without start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CELLS = {  # row name -> the cell's flags
    "gru": ["--cell", "gru"],
    "lngru": ["--cell", "lngru"],
    "mingru": ["--cell", "mingru"],
    "gru, zoneout 0.1": ["--cell", "gru", "--zoneout", "0.1"],
}
# minGRU reads one direction, so classify runs one direction for every cell.
RUNS = {  # column -> the task and its flags (the same for every cell)
    "lm shakespeare": ["lm"],
    "forecast sunspots": ["forecast", "--dataset", "sunspots"],
    "classify GunPoint": ["classify", "--dataset", "GunPoint", "--no-bidirectional"],
    "classify JapaneseVowels": ["classify", "--dataset", "JapaneseVowels", "--no-bidirectional"],
}


def result(column: str, m: dict) -> str:
    if column.startswith("lm"):
        return f"{m['bpc']:.3f} bpc"
    if column.startswith("forecast"):
        return f"MAE {m['gru']['mae']:.4g}, MASE {m['gru']['mase']:.3f}"
    return f"accuracy {m['accuracy']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/cells", help="folder for the run directories")
    ap.add_argument("--only", nargs="*", choices=list(CELLS), help="run only these rows")
    args = ap.parse_args()
    grukit = str(Path(sys.executable).with_name("grukit"))
    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = {}
    for name, cell_flags in CELLS.items():
        if args.only and name not in args.only:
            continue
        cells = []
        for column, (task, *flags) in RUNS.items():
            out = Path(args.out) / name.replace(", ", "-").replace(" ", "") / column.split()[-1]
            cmd = [grukit, "train", task, *flags, *cell_flags, "--out", str(out), "--no-progress"]
            print(" ".join(cmd[1:]), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            m = json.loads((out / "metrics.json").read_text())
            cells.append(f"{result(column, m)} ({m['train_seconds']:.0f} s)")
        rows[name] = cells
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print("| cell | " + " | ".join(RUNS) + " |")
    print("|---" * (len(RUNS) + 1) + "|")
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
