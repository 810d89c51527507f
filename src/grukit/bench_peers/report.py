"""The peers benchmark's table and plot (from the dict :func:`grukit.bench_peers.run` returns)."""

from __future__ import annotations

from ..bench import machine_line, ratio_axis

ORDER = ("grukit", "grukit-bf16", "onnxruntime", "openvino", "openvino-bf16", "jax", "keras")


def _engines(rows: list[dict]) -> list[str]:
    seen = {e for r in rows for e in r["ratio"]}
    return [e for e in ORDER if e in seen] + sorted(seen - set(ORDER))


def _sections(res: dict):
    """(mode, threads, rows) in the order of the table and the plot."""
    for mode in ("infer", "train"):
        for n in sorted({r["threads"] for r in res["rows"]}):
            sel = [r for r in res["rows"] if r["mode"] == mode and r["threads"] == n]
            if sel:
                yield mode, n, sel


def format_table(res: dict) -> str:
    """Fixed-width text: torch's median time, each engine's ratio (torch time / engine time), geometric means, % of peak."""
    lines = [machine_line(res["machine"])]
    peaks = ", ".join(f"{n} thread(s) {g:.0f} GFLOP/s" for n, g in res["fp32_matmul_peak_gflops"].items())
    lines.append(f"fp32 matmul peak (best torch.mm, this process): {peaks}")
    for name, e in res["engines"].items():
        lines.append(
            f"  {name:<14}{e['version']:<16}{e['precision']:<6}{'trains' if e['trains'] else 'inference only':<16}{e['note']}"
        )
    for name, why in res["skipped"].items():
        lines.append(f"  {name:<14}skipped: {why}")
    lines.append(
        "ratio = torch.nn.GRU median time / engine median time: above 1 is faster than torch; bf16 engines against torch fp32"
    )
    lines.append("inference: no grad; training: forward and backward of sum(output * g), gradients of the weights")
    for mode, n, sel in _sections(res):
        engines = _engines(sel)
        what = f"{'inference' if mode == 'infer' else 'training'}, {n} thread{'s' if n > 1 else ''}"
        head = f"{what:<28}{'torch':>10}" + "".join(f"{e:>14}" for e in engines)
        lines += ["", head, "-" * len(head)]
        for r in sel:
            cells = "".join(f"{r['ratio'][e]:>13.2f}x" if e in r["ratio"] else f"{'-':>14}" for e in engines)
            lines.append(f"{r['config']:<28}{r['ms']['torch']:>8.2f}ms{cells}")
        geo = res["summary"]["geomean_ratio"][f"{mode} {n}t"]
        lines.append(
            f"{'geometric mean':<38}" + "".join(f"{geo[e]:>13.2f}x" if e in geo else f"{'-':>14}" for e in engines)
        )
        large = [r for r in sel if r["large"]]
        if large:
            lines.append(f"{'% of fp32 matmul peak':<28}{'torch':>10}" + "".join(f"{e:>14}" for e in engines))
            for r in large:
                frac = r["peak_frac"]
                lines.append(
                    f"{'  ' + r['config']:<28}{100 * frac['torch']:>9.0f}%"
                    + "".join(f"{100 * frac[e]:>13.0f}%" if e in frac else f"{'-':>14}" for e in engines)
                )
    if any(f > 1 for r in res["rows"] for f in r["peak_frac"].values()):
        lines += [
            "",
            "note: a fraction above 100% means the peak measurement was slowed by other load; rerun on a quieter machine",
        ]
    return "\n".join(lines)


def plot(res: dict, path: str) -> None:
    """One panel per (mode, threads): each engine's ratio per config, log scale, 1 = torch.nn.GRU (PNG)."""
    import matplotlib

    from ..figures import new_figure, save_figure

    sections = list(_sections(res))
    colours = {
        e: matplotlib.colormaps["tab10"](k) for k, e in enumerate(_engines(res["rows"]))
    }  # one colour per engine in every panel
    configs = list(dict.fromkeys(r["config"] for r in res["rows"]))
    fig, axes = new_figure(
        (5 * len(sections), 0.5 * len(configs) * 1.6 + 2), nrows=1, ncols=len(sections), sharey=True, squeeze=False
    )
    for ax, (mode, n, sel) in zip(axes[0], sections):
        engines = _engines(sel)
        width = 0.8 / max(len(engines), 1)
        by_config = {r["config"]: r for r in sel}
        for k, e in enumerate(engines):
            ys = [i - 0.4 + (k + 0.5) * width for i in range(len(configs))]
            xs = [by_config[c]["ratio"].get(e, float("nan")) if c in by_config else float("nan") for c in configs]
            ax.barh(ys, xs, height=width, label=e, color=colours[e])
        ratio_axis(ax)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_title(f"{'inference' if mode == 'infer' else 'training'}, {n} thread(s)", fontsize=10)
        ax.set_xlabel("torch time / engine time")
    axes[0][0].set_yticks(range(len(configs)), configs)
    axes[0][0].invert_yaxis()
    axes[0][0].legend(loc="lower right", fontsize=8)  # the inference panel has every engine
    m = res["machine"]
    fig.suptitle(f"GRU engines vs torch.nn.GRU: {m['cpu']}, torch {m['torch']}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
