"""grukit report DIR: one self-contained page with the run's config, metrics beside baselines, history and pictures."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from grukit.cli import main
from grukit.report import build_report

TINY = ["--epochs", "2", "--steps", "5", "--eval-pairs", "20", "--no-progress"]


def run(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def adding_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "adding"
    run("train", "adding", "--out", out, *TINY)
    return out


class Page(HTMLParser):
    """The tables (id -> rows of cell texts) and image sources of a page; fails on any external resource."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.images, self.stack, self.cell = {}, [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.stack.append(attrs.get("id") or f"table{len(self.tables)}")
            self.tables[self.stack[-1]] = []
        elif tag == "tr" and self.stack:
            self.tables[self.stack[-1]].append([])
        elif tag in ("td", "th"):
            self.cell = ""
        elif tag == "img":
            self.images.append((attrs["alt"], attrs["src"]))
        assert tag not in ("link", "iframe") and not (tag == "script" and "src" in attrs), (
            f"external resource: {tag} {attrs}"
        )

    def handle_endtag(self, tag):
        if tag == "table":
            self.stack.pop()
        elif tag in ("td", "th") and self.stack and self.cell is not None:
            self.tables[self.stack[-1]][-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_report_holds_metrics_history_config_and_embedded_pictures(adding_run):
    result = run("report", adding_run)
    assert result.output.strip() == f"report written to {adding_run / 'report.html'}"
    page = Page((adding_run / "report.html").read_text())
    metrics = json.loads((adding_run / "metrics.json").read_text())
    got = dict(row for row in page.tables["metrics"] if len(row) == 2)
    assert float(got["accuracy"]) == pytest.approx(metrics["accuracy"], rel=1e-5)
    by_bits = next(rows for rows in page.tables.values() if ["64", f"{metrics['accuracy_by_bits']['64']:.6g}"] in rows)
    assert len(by_bits) == 4  # accuracy_by_bits as its own small table
    history = [json.loads(line) for line in (adding_run / "history.jsonl").read_text().splitlines()]
    assert page.tables["history"][0] == list(history[0]) and len(page.tables["history"]) == 1 + len(history)
    config = json.loads((adding_run / "config.json").read_text())["config"]
    assert ["steps", str(config["steps"])] in next(rows for rows in page.tables.values() if ["log", "none"] in rows)
    assert [alt for alt, _ in page.images] == ["loss.png"]
    assert all(src.startswith("data:image/png;base64,") for _, src in page.images)


def test_baselines_and_sibling_scores_become_comparison_tables(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"task": "forecast", "config": {"x": "<b>"}}))
    (tmp_path / "metrics.json").write_text(
        json.dumps(
            {
                "accuracy": 0.9,
                "macro_f1": 0.8,
                "note": "<script>alert(1)</script>",
                "baselines": {"majority": {"accuracy": 0.5, "macro_f1": 0.3}, "1nn": {"accuracy": 0.7}},
                "gru": {"mae": 1.0, "rmse": 2.0},
                "naive": {"mae": 3.0, "rmse": 4.0},
            }
        )
    )
    text = build_report(tmp_path)
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;b&gt;" in text
    tables = list(Page(text).tables.values())
    assert [
        ["", "accuracy", "macro_f1"],
        ["this run", "0.9", "0.8"],
        ["majority", "0.5", "0.3"],
        ["1nn", "0.7", "-"],
    ] in tables
    assert [["", "mae", "rmse"], ["gru", "1", "2"], ["naive", "3", "4"]] in tables


def test_unfinished_run_is_reported_without_metrics(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"task": "adding", "config": {}}))
    assert "no metrics.json: the run did not finish" in build_report(tmp_path)


@pytest.mark.parametrize(
    "what,message",
    [
        ("missing", "Error: {d}/missing: no such run directory"),
        ("empty", "Error: {d}: not a grukit run directory (no config.json)"),
        ("broken", "Error: {d}/config.json: not a grukit run config (an object with a 'config' object)"),
    ],
)
def test_non_runs_are_one_line_errors(tmp_path, what, message):
    if what == "broken":
        (tmp_path / "config.json").write_text("[1]")
    result = run("report", tmp_path / "missing" if what == "missing" else tmp_path, code=1)
    assert result.output.strip() == message.format(d=tmp_path)


def test_to_writes_elsewhere(adding_run, tmp_path):
    run("report", adding_run, "--to", tmp_path / "sub" / "page.html")
    assert "<h1>adding: " in (tmp_path / "sub" / "page.html").read_text()


def chromium():
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found is None:
        if os.environ.get("GRUKIT_REQUIRE_BROWSER"):
            pytest.fail("GRUKIT_REQUIRE_BROWSER is set but no chromium is on PATH (make browser installs it as root)")
        pytest.skip(
            "no Chromium on PATH to open the report in (install: sudo apt-get install -y chromium, or `make browser` as root)"
        )
    return found


# Written into a test copy of the page: each image's name and decoded width, once the page has loaded.
PROBE = """<img alt="broken-control" src="data:image/png;base64,AAAA"><script>
window.addEventListener("load", () => {
  document.body.setAttribute("data-images", JSON.stringify([...document.images].map(i => [i.alt, i.naturalWidth])));
});
</script></body>"""


def test_every_image_loads_in_a_headless_browser(adding_run, tmp_path):
    browser = chromium()
    (adding_run / "broken.png").write_bytes(b"not a png")  # a run's bad picture must show up as not loaded
    try:
        run("report", adding_run, "--to", tmp_path / "page.html")
    finally:
        (adding_run / "broken.png").unlink()
    (tmp_path / "probe.html").write_text((tmp_path / "page.html").read_text().replace("</body>", PROBE))
    cmd = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        (tmp_path / "probe.html").as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    found = re.search(r'data-images="([^"]*)"', dom)
    assert found, f"the page's probe did not run; chromium printed: {dom[:300]!r}"
    widths = dict(json.loads(found.group(1).replace("&quot;", '"')))
    assert widths["loss.png"] > 0 and widths["broken.png"] == 0 and widths["broken-control"] == 0
    assert set(widths) == {"loss.png", "broken.png", "broken-control"}
    assert 'id="metrics"' in dom and "accuracy" in dom


def test_an_ensembles_kept_epochs_are_each_highlighted(tmp_path):
    import torch

    from grukit.training import save_tensors

    (tmp_path / "config.json").write_text(json.dumps({"task": "regress", "config": {}}))
    rows = [{"epoch": e, "train_loss": 1.0, "val_loss": 1.0, "member0_val_loss": 1.0, "seconds": 0.1} for e in range(5)]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    state = {"epoch": 5, "best": [0.1, 0.2, 0.3], "best_epoch": [3, 1, 3], "stale": [1, 3, 1]}  # one per member
    save_tensors(tmp_path / "checkpoint.safetensors", {"w": torch.zeros(1)}, {"state": json.dumps(state)})
    text = build_report(tmp_path)
    marked = re.findall(r'<tr( class="kept"[^>]*)?><td class="num">(\d+)</td>', text)
    assert [int(epoch) for mark, epoch in marked if mark] == [1, 3] and len(marked) == 5
    assert "the highlighted rows (epochs 1, 3) hold the ensemble members&#x27; kept weights" in text
