"""The README's record of the last `imgrec bench e2e` runs says what the committed reports say."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLAIN = "plain fp32 (Pillow, no draft)"


def _report(model: str) -> dict:
    name = "e2e.json" if model == "lite0" else f"e2e-{model}.json"
    return json.loads((ROOT / "docs" / name).read_text())


def _tables() -> dict[str, list[list[str]]]:
    """The tables of the README's "End to end" section, by their first header cell."""
    section = (ROOT / "README.md").read_text().split("### End to end", 1)[1].split("\n### ", 1)[0]
    tables: dict[str, list[list[str]]] = {}
    rows: list[list[str]] = []
    for line in [*section.splitlines(), ""]:
        if line.startswith("| "):
            rows.append(line.strip("| ").split(" | "))
        elif rows:
            tables[rows[0][0]] = rows[2:]
            rows = []
    return tables


def _throughput_rows(r: dict) -> list[list[str]]:
    model, cpu = r["model"], r["cpu"]
    plain, engine = r["bare"][PLAIN], r["bare"][f"engine {model}"]
    per = cpu["cpu_ms_per_image"]
    return [
        [f"service, {model}", f"{r['main']['images_per_second']:.1f}",
         f"{cpu['cpu_ms_per_image_total']:.2f} (web {per['web']:.2f}, workers {per['worker']:.2f})"],
        [f"bare plain fp32 (same run as {model})", f"{plain['images_per_second']:.1f}", f"{plain['cpu_ms_per_image']:.2f}"],
        [f"bare engine {model}", f"{engine['images_per_second']:.1f}", f"{engine['cpu_ms_per_image']:.2f}"],
    ]


def _target_cell(r: dict, words: str) -> str:
    (row,) = [t for t in r["targets"] if words in t["target"]]
    return f"{row['measured']} **{'pass' if row['passed'] else 'fail'}**"


def test_the_throughput_table_is_the_committed_reports():
    fp32, int8 = _report("lite0"), _report("lite0-int8")
    (rows,) = [rows for head, rows in _tables().items() if head.startswith("64 clients")]
    assert rows == _throughput_rows(fp32) + _throughput_rows(int8)


def test_the_targets_table_is_the_committed_reports():
    fp32, int8 = _report("lite0"), _report("lite0-int8")
    rows = {row[0].split(" ")[0]: row for row in _tables()["target"]}
    assert rows["service"][1:] == [_target_cell(fp32, "plain bare"), _target_cell(int8, "plain bare")]
    assert rows["int8"][1:] == ["", _target_cell(int8, "top-1")]
    assert rows["CPU"][1:] == [_target_cell(fp32, "CPU busy"), _target_cell(int8, "CPU busy")]
    assert rows["idle"][1:] == [_target_cell(fp32, "idle"), _target_cell(int8, "idle")]
    assert rows["cold"][1:] == [_target_cell(fp32, "cold start"), _target_cell(int8, "cold start")]
    answered = [f"{r['lost_or_5xx_or_wrong']} of {r['requests'] * r['rounds']}" for r in (fp32, int8)]
    assert rows["lost,"][1:] == answered


def test_the_sweep_and_stage_tables_are_the_committed_report():
    fp32 = _report("lite0")
    tables = _tables()
    assert tables["clients"] == [
        [str(s["concurrency"]), f"{s['images_per_second']:.1f}", f"{s['p50_ms']:.1f}", f"{s['p95_ms']:.1f}", f"{s['p99_ms']:.1f}"]
        for s in fp32["sweep"]
    ]
    loaded, idle = fp32["stages_ms_per_image"], fp32["idle_stages_ms_per_image"]
    assert tables["stage"] == [[stage, f"{ms:.2f}", f"{idle[stage]:.2f}"] for stage, ms in loaded.items()]
