"""``grukit report DIR``: one static, self-contained HTML page about a run.

The page holds the run's task and config (config.json), its test metrics
beside their baselines (metrics.json), the epoch history (history.jsonl) and
every picture in the run (DIR/*.png, embedded as base64 data URIs, so the
file can be mailed or archived alone). Each task's metrics differ, so they are
laid out generically: numbers in one table, baselines as rows under the run's
own row, sibling dicts with the same keys (forecast's gru, naive, ...) as one
comparison table, any other dict as a small table of its own. All text is
escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from .tasks.base import run_task_name
from .training import read_json
from .training.checkpoint import atomic_write_bytes
from .training.loop import HISTORY_FILE, STATE_FILE, VALIDATED_FILE

REPORT_FILE = "report.html"
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; } caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } tr.run td, tr.kept td { background: #eef6ee; font-weight: 600; }
pre { white-space: pre-wrap; margin: 0; max-width: 45em; } img { max-width: 100%; height: auto; } figure { margin: 1em 0; }
.note { color: #666; }
"""


def write_report(run: str | Path, to: str | Path | None = None) -> Path:
    """Write the page to ``to`` (default DIR/report.html), atomically; returns its path."""
    run = Path(run)
    page = build_report(run)
    path = Path(to) if to is not None else run / REPORT_FILE
    if path.is_dir():
        raise IsADirectoryError(f"--to {path} is a directory; name the HTML file to write")
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


def build_report(run: Path) -> str:
    """The page's HTML text. Raises a one-line error for a directory that holds no grukit run."""
    if run.is_dir() and not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run}: not a grukit run directory (no config.json)")
    task = run_task_name(run)  # a missing directory or broken config.json: one line naming it
    meta = read_json(run / "config.json")
    metrics_path = run / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else None
    if metrics is not None and not isinstance(metrics, dict):
        raise ValueError(f"{metrics_path}: not a grukit metrics file (a JSON object)")
    history = _read_history(run / HISTORY_FILE)
    kept = _kept_epochs(run / STATE_FILE)
    title = f"{task}: {run}"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">grukit {_e(meta.get("grukit_version", "?"))} run of the <b>{_e(task)}</b> task, in {_e(run.resolve())}</p>',
        "<h2>Test metrics</h2>",
        _metrics_html(metrics)
        if metrics
        else '<p class="note">no metrics.json: the run did not finish (resume it with grukit train --resume).</p>',
        "<h2>Training history</h2>",
        _history_html(history, kept, refitted=(run / VALIDATED_FILE).is_file()),
        "<h2>Pictures</h2>",
        _images_html(run),
        "<h2>Config</h2>",
        _pairs_table(meta["config"], "config"),
    ]
    body = "\n".join(parts)
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n'


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}, line {i}: not valid JSON") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {i}: not a JSON object")
        rows.append(row)
    return rows


def _kept_epochs(path: Path) -> list[int]:
    """The epochs whose weights model.safetensors holds, from the training state's header: one, or an
    ensemble's one per member (none if unknown)."""
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size)) if 0 < size < 10_000_000 else {}
        best = json.loads(header.get("__metadata__", {}).get("state", "{}")).get("best_epoch")
    except (OSError, ValueError, AttributeError):
        return []
    epochs = best if isinstance(best, list) else [best]
    return sorted({e for e in epochs if isinstance(e, int) and not isinstance(e, bool) and e >= 0})


def _scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _cell(value) -> str:
    """One table cell: numbers right-aligned to 6 significant digits, long or multi-line text as <pre>."""
    if isinstance(value, bool) or value is None:
        return f"<td>{_e('-' if value is None else str(value).lower())}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if isinstance(value, float):
        return f'<td class="num">{_e(f"{value:.6g}" if math.isfinite(value) else value)}</td>'
    if isinstance(value, str):
        return f"<td><pre>{_e(value)}</pre></td>" if "\n" in value or len(value) > 80 else f"<td>{_e(value)}</td>"
    if isinstance(value, dict):
        return f"<td>{_pairs_table(value)}</td>"
    if isinstance(value, list) and value and all(isinstance(r, list) for r in value):
        rows = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in value)
        return f"<td><table>{rows}</table></td>"
    return f"<td>{_e(json.dumps(value))}</td>"


def _pairs_table(values: dict, caption: str | None = None, table_id: str | None = None) -> str:
    """Name | value rows."""
    head = f' id="{_e(table_id)}"' if table_id else ""
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    rows = "".join(f"<tr><th>{_e(k)}</th>{_cell(v)}</tr>" for k, v in values.items())
    return f"<table{head}>{cap}{rows}</table>"


def _matrix_table(rows: dict[str, dict], caption: str, first: tuple[str, dict] | None = None) -> str:
    """One row per entry, one column per key; ``first`` (the run's own numbers) heads it, highlighted."""
    columns = list(dict.fromkeys(k for r in rows.values() for k in r))
    head = "<tr><th></th>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>"
    lines = []
    if first is not None:
        name, values = first
        lines.append(f'<tr class="run"><th>{_e(name)}</th>' + "".join(_cell(values.get(c)) for c in columns) + "</tr>")
    lines += [
        f"<tr><th>{_e(name)}</th>" + "".join(_cell(r.get(c)) for c in columns) + "</tr>" for name, r in rows.items()
    ]
    return f'<table class="compare"><caption>{_e(caption)}</caption>{head}{"".join(lines)}</table>'


def _metrics_html(metrics: dict) -> str:
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    parts = [_pairs_table(scalars, "this run", table_id="metrics")]
    baselines = nested.pop("baselines", None)
    if isinstance(baselines, dict) and baselines and all(isinstance(v, dict) for v in baselines.values()):
        parts.append(_matrix_table(baselines, "this run beside the baselines", ("this run", scalars)))
    elif baselines is not None:
        nested["baselines"] = baselines
    groups: dict[
        frozenset, dict[str, dict]
    ] = {}  # dicts of numbers with the same keys: one table (forecast's gru, naive, ...)
    for name, value in nested.items():
        if value and all(_scalar(v) for v in value.values()):
            groups.setdefault(frozenset(value), {})[name] = value
    for group in groups.values():
        if len(group) > 1:
            parts.append(_matrix_table(group, ", ".join(group)))
            for name in group:
                del nested[name]
    parts += [_pairs_table(value, name) for name, value in nested.items()]
    return "\n".join(parts)


def _history_html(history: list[dict], kept: list[int], refitted: bool = False) -> str:
    if not history:
        return '<p class="note">no history.jsonl: no epoch finished.</p>'
    columns = list(dict.fromkeys(k for r in history for k in r))
    head = "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>"
    rows = []
    for r in history:
        where = "validated.safetensors (and the epochs refitted)" if refitted else "model.safetensors"
        mark = f' class="kept" title="the weights kept in {where}"' if r.get("epoch") in kept else ""
        rows.append(f"<tr{mark}>" + "".join(_cell(r.get(c)) for c in columns) + "</tr>")
    note = ""
    if len(kept) == 1:
        note = f"the highlighted row (epoch {kept[0]}) holds the kept weights"
    elif kept:
        note = f"the highlighted rows (epochs {', '.join(map(str, kept))}) hold the ensemble members' kept weights"
    if note and refitted:
        note += " (validated.safetensors); model.safetensors holds the models trained again through the same epochs on all the training data (refit_history.jsonl)"
    note = f'<p class="note">epochs count from 0, as in history.jsonl; {_e(note)}.</p>' if note else ""
    return f'{note}<table id="history">{head}{"".join(rows)}</table>'


def _images_html(run: Path) -> str:
    images = sorted(p for p in run.glob("*.png") if not p.name.startswith("."))  # not a plot being written
    if not images:
        return '<p class="note">no pictures in the run.</p>'
    figures = []
    for p in images:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        figures.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{_e(p.name)}"><figcaption>{_e(p.name)}</figcaption></figure>'
        )
    return "\n".join(figures)
