"""The README's record of the last live replay says what the committed report says."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _replay_rows() -> dict[str, list[str]]:
    section = (ROOT / "README.md").read_text().split("### Checked against live runs", 1)[1]
    section = section.split("\n### ", 1)[0]
    rows = [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    assert rows and rows[0][0] == "trace", "the replay table is where the README records it"
    return {row[0]: row for row in rows[2:]}


def test_the_readme_replay_table_is_the_committed_report():
    report = json.loads((ROOT / "docs" / "replay.json").read_text())
    rows = _replay_rows()
    assert sorted(rows) == sorted(report["shapes"])
    for name, shape in report["shapes"].items():
        live, sim, diff = shape["live"], shape["simulated"], shape["difference"]
        runs = ", ".join(str(round(r["p99_ms"])) for r in shape["live_runs"])
        assert rows[name] == [
            name, str(live["requests"]),
            str(round(live["worker_seconds"])), str(round(sim["worker_seconds"])), f"{round(diff['worker_seconds'] * 100)} %",
            f"{round(live['p99_ms'])} ({runs})", str(round(sim["p99_ms"])), f"{round(diff['p99_ms'] * 100)} %",
        ], name


def test_the_readme_says_how_many_shapes_agreed():
    report = json.loads((ROOT / "docs" / "replay.json").read_text())
    words = {2: "Two", 3: "Three", 4: "Four"}
    section = (ROOT / "README.md").read_text().split("### Checked against live runs", 1)[1]
    said = re.search(r"(\w+) shapes? of four agree", section)
    assert said and said.group(1) == words.get(report["agreeing_shapes"], str(report["agreeing_shapes"]))
