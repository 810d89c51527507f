"""Run every task's default configuration and print the README's results table.

    python benchmarks/tasks.py [--out runs/defaults] [--only NAME ...]

Each run is `grukit train TASK [--dataset NAME] --out DIR --no-progress` in a
fresh process; the wall time includes start-up and scoring. The table is
Markdown, ready to paste; the raw metrics stay in each run's metrics.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RUNS = [
    ("adding", "adding", None),
    ("classify", "GunPoint", "GunPoint"),
    ("classify", "ItalyPowerDemand", "ItalyPowerDemand"),
    ("classify", "ArrowHead", "ArrowHead"),
    ("classify", "BasicMotions", "BasicMotions"),
    ("classify", "JapaneseVowels", "JapaneseVowels"),
    ("classify", "toy", "toy"),
    ("classify", "shakespeare (genre)", "shakespeare"),
    ("classify", "rotten_tomatoes", "rotten_tomatoes"),
    ("regress", "toy", "toy"),
    ("regress", "Covid3Month", "Covid3Month"),
    ("regress", "nyse", "nyse"),
    ("regress", "nyse_day", "nyse_day"),
    ("forecast", "sunspots", "sunspots"),
    ("forecast", "co2", "co2"),
    ("forecast", "seattle_weather", "seattle_weather"),
    ("forecast", "gafa_stock", "gafa_stock"),
    ("lm", "shakespeare", None),
    ("music", "bach chorales (roll)", "bach"),
    ("music", "bach chorales (voices)", ["--dataset", "bach", "--encoding", "voices"]),
    ("autoencoder", "kdd_tsad_135", "kdd_tsad_135"),
    ("autoencoder", "ArrowHead (clustering)", "ArrowHead"),
    ("autoencoder", "OSULeaf (clustering)", "OSULeaf"),
    ("autoencoder", "ACSF1 (clustering)", "ACSF1"),
]


def summarise(task: str, m: dict) -> tuple[str, str]:
    """(our result, the baselines) as short strings."""
    if task == "adding":
        bits = m["accuracy_by_bits"]
        return (
            f"exact sums: {m['accuracy']:.3f} (8-bit held out), {bits['64']:.3f} (64-bit)",
            "trained on <= 8-bit numbers only",
        )
    if task == "classify":
        b = m["baselines"]
        shown = [f"1-NN-DTW (published) {b['1nn_dtw_published']['accuracy']:.3f}"] if "1nn_dtw_published" in b else []
        shown += [
            f"{name.replace('_', ' ')} {v['accuracy']:.3f}" for name, v in b.items() if name != "1nn_dtw_published"
        ]
        return f"accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}", "; ".join(shown)
    if task == "regress":
        b = m["baselines"]
        shown = [f"{k.replace('_', ' ')} MAE {v['mae']:.4g}, R^2 {v['r2']:.3f}" for k, v in b.items()]
        shown += [f"{k.replace('_', ' ')} (published) R^2 {v}" for k, v in m.get("published", {}).items()]
        return f"MAE {m['mae']:.4g}, R^2 {m['r2']:.3f}", "; ".join(shown)
    if task == "forecast":
        g, n, s = m["gru"], m["naive"], m["seasonal_naive"]
        if m.get("target") == "GOOG":  # fpp3 5.8 reports RMSE
            shown = "; ".join(
                f"{k.replace('_', ' ')} RMSE {m[k]['rmse']:.4g}" for k in ("naive", "drift", "mean", "seasonal_naive")
            )
            return (
                f"RMSE {g['rmse']:.4g}, MAE {g['mae']:.4g}",
                shown + " (fpp3 5.8 published: naive 43.43, drift 53.07, mean 118.03)",
            )
        return (
            f"MAE {g['mae']:.4g}, MASE {g['mase']:.3f}",
            f"naive MAE {n['mae']:.4g} / MASE {n['mase']:.3f}; seasonal naive MAE {s['mae']:.4g} / MASE {s['mase']:.3f}",
        )
    if task == "lm":
        return f"{m['bpc']:.3f} bits/char", f"unigram {m['unigram_bpc']:.3f}; trigram {m['trigram_bpc']:.3f}"
    if task == "music" and m["encoding"] == "roll":
        return (
            f"NLL {m['nll']:.3f} nats/frame (Chung et al. 2014 JSB, other split, quarter notes: GRU 8.54, LSTM 8.67)",
            f"key frequency {m['frequency_nll']:.3f}; repeat previous frame {m['repeat_nll']:.3f}",
        )
    if task == "music":
        acc = ", ".join(f"{v} {m[v + '_accuracy']:.3f}" for v in ("soprano", "alto", "tenor", "bass"))
        uni = ", ".join(f"{m[v + '_unigram_accuracy']:.3f}" for v in ("soprano", "alto", "tenor", "bass"))
        return f"NLL {m['nll']:.3f} nats/step; accuracy {acc}", f"unigram NLL {m['unigram_nll']:.3f}; accuracy {uni}"
    if task == "autoencoder" and "hit" in m:
        d = m["baselines"]["matrix_profile_discord"]

        def said(r):
            return f"top point {r['top_point']} ({'hit' if r['hit'] else 'miss'}), ROC AUC {r['roc_auc']:.3f}, best F1 {r['best_f1']:.3f}"

        return said(m), "matrix-profile discord: " + said(d)
    if task == "autoencoder":
        b = m["baselines"]
        return (
            f"ARI {m['ari']:.3f}; held-out MSE {m['test_mse']:.3g}",
            f"k-means on the series {b['kmeans_euclidean']['ari']:.3f}; published: Euclidean k-means "
            f"{b['kmeans_euclidean_published']['ari']:.3f}, best {b['best_published']['ari']:.3f}; "
            + ", ".join(f"{k.replace('_', ' ')} MSE {v['mse']:.3g}" for k, v in b.items() if "mse" in v),
        )
    raise ValueError(task)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/defaults", help="folder for the run directories")
    ap.add_argument("--only", nargs="*", help="run only these labels (e.g. GunPoint co2)")
    args = ap.parse_args()
    rows = []
    for task, label, dataset in RUNS:
        if args.only and label not in args.only and task not in args.only:
            continue
        out = Path(args.out) / f"{task}-{label}"
        cmd = [sys.executable, "-m", "grukit", "train", task, "--out", str(out), "--no-progress"]
        if dataset:
            cmd += dataset if isinstance(dataset, list) else ["--dataset", dataset]  # a data set's name, or flags
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            rows.append((task, label, f"FAILED: {done.stderr.strip().splitlines()[-1:]}", "", f"{seconds:.0f}"))
        else:
            ours, base = summarise(task, json.loads((out / "metrics.json").read_text()))
            rows.append((task, label, ours, base, f"{seconds:.0f}"))
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print("| task | data | grukit (test) | baselines (test) | wall s |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
