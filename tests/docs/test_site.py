"""The documentation site: built strictly, its generated parts what the code and the
recorded runs say, and every command on its pages placed (where it runs, what it needs)."""

from __future__ import annotations

import json
import re

from docsite import DOCS, ROOT, table, tables
from imgrec.settings import ENV_PREFIX, Settings, documented

PAGES = sorted(DOCS.rglob("*.md"))
E2E = ("e2e.json", "e2e-lite0-int8.json")
REPLAYS = ("replay.json", "replay-before.json", "replay-median.json")


def _run(name: str) -> dict:
    return json.loads((DOCS / name).read_text())


def _verdict(target: dict) -> str:
    return target["measured"] + {True: " pass", False: " fail", None: ""}[target["passed"]]


def test_every_page_is_built(site):
    for page in PAGES:
        built = page.relative_to(DOCS).with_suffix("")
        built = built.parent if built.name == "index" else built
        assert (site / built / "index.html").is_file(), page


def test_the_configuration_page_lists_every_setting_with_its_default(site):
    rows = table(site / "configuration" / "index.html", "variable", "default", "meaning")
    assert rows == [list(row) for row in documented()]
    assert [row[0] for row in rows] == [ENV_PREFIX + name.upper() for name in Settings.model_fields]


def test_the_performance_page_shows_the_recorded_end_to_end_runs(site):
    page = site / "performance" / "index.html"
    runs = [_run(name) for name in E2E]
    throughput = []
    for r in runs:
        per = r["cpu"]["cpu_ms_per_image"]
        throughput.append([f"service, {r['model']}", f"{r['main']['images_per_second']:.1f}",
                           f"{r['cpu']['cpu_ms_per_image_total']:.2f} (web {per['web']:.2f}, workers {per['worker']:.2f})"])
        throughput += [[f"bare {name}, same run as {r['model']}", f"{b['images_per_second']:.1f}", f"{b['cpu_ms_per_image']:.2f}"]
                       for name, b in r["bare"].items()]
    assert table(page, "64 clients, 1000 requests", "images/s", "CPU ms per image") == throughput

    targets = {row[0]: row[1:] for row in table(page, "target", *(r["model"] for r in runs))}
    for i, r in enumerate(runs):
        for t in r["targets"]:
            assert targets[t["target"].removeprefix(f"{r['model']} ")][i] == _verdict(t)
    assert targets["lost, 5xx, wrong labels (every answer checked)"] == [
        f"{r['lost_or_5xx_or_wrong']} of {r['requests'] * r['rounds']}" for r in runs
    ]

    fp32 = runs[0]
    assert table(page, "clients", "images/s") == [
        [str(s["concurrency"]), f"{s['images_per_second']:.1f}", f"{s['p50_ms']:.1f}", f"{s['p95_ms']:.1f}", f"{s['p99_ms']:.1f}"]
        for s in fp32["sweep"]
    ]
    loaded, idle = fp32["stages_ms_per_image"], fp32["idle_stages_ms_per_image"]
    assert table(page, "stage") == [[stage, f"{ms:.2f}", f"{idle[stage]:.2f}"] for stage, ms in loaded.items()]


def test_the_performance_page_shows_the_recorded_replays(site):
    page = site / "performance" / "index.html"
    shown = [t[1:] for t in tables(page) if t and t[0][0] == "trace"]
    text = page.read_text()
    for name in REPLAYS:
        report = _run(name)
        rows = []
        for trace, s in report["shapes"].items():
            live, sim, diff = s["live"], s["simulated"], s["difference"]
            runs = ", ".join(str(round(r["p99_ms"])) for r in s["live_runs"])
            rows.append([
                trace, str(live["requests"]), str(round(live["worker_seconds"])), str(round(sim["worker_seconds"])),
                f"{round(diff['worker_seconds'] * 100)}%", f"{round(live['p99_ms'])} ({runs})", str(round(sim["p99_ms"])),
                f"{round(diff['p99_ms'] * 100)}%", "yes" if s["agrees"] else "no",
            ])
        assert rows in shown, name
        assert f"{report['agreeing_shapes']} of {len(report['shapes'])} traces agree" in text, name
        assert f'href="../{name}"' in text, f"the page links {name}"


def test_the_api_reference_covers_the_schema_which_is_in_the_site(site):
    from imgrec.web.app import create_app

    schema = create_app(Settings()).openapi()
    assert json.loads((site / "openapi.json").read_text()) == schema
    page = (site / "api" / "index.html").read_text()
    headings = set(re.findall(r"<h3[^>]*><code>([^<]+)</code>", page))
    assert headings == {f"{method.upper()} {path}" for path, ops in schema["paths"].items() for method in ops}
    assert 'href="../openapi.json"' in page


def test_every_test_the_pages_name_exists():
    named = {path for page in [*PAGES, ROOT / "README.md"] for path in re.findall(r"`(tests/[\w/.]+)`", page.read_text())}
    assert named, "the pages name the tests behind their promises"
    assert [path for path in sorted(named) if not (ROOT / path).exists()] == []


def test_every_command_says_where_it_runs_and_what_it_needs():
    placed = re.compile(r"^\*\*Where:\*\* .+\. \*\*Needs:\*\* .+")
    unplaced = []
    for page in [*PAGES, ROOT / "README.md"]:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() in ("```sh", "```python"):
                before = [previous for previous in lines[:i] if previous.strip()]
                if not (before and placed.match(before[-1])):
                    unplaced.append(f"{page.relative_to(ROOT)}:{i + 1}")
    assert unplaced == []


def test_the_readme_is_one_screen_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    assert "make run" in readme and "make test" in readme
