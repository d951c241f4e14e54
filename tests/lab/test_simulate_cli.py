"""`imgrec simulate` end to end in-process: the table, the JSON and the chart."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from imgrec import cli

FIGURES = {"worker_seconds", "p50_ms", "p95_ms", "p99_ms", "slo_attainment", "cold_starts", "scale_events", "peak_workers"}
GIVEN = ["--service", "0.001,0.0135", "--cold-start", "0.7", "--cores", "0"]  # nothing measured


def invoke(*args: str):
    return CliRunner().invoke(cli.app, ["simulate", *args])


def test_simulate_writes_the_table_json_and_chart(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGREC_DATA_DIR", str(tmp_path / "data"))
    out, png = tmp_path / "out.json", tmp_path / "sim.png"
    result = invoke(
        "--trace", "bursts", "--duration", "120", "--rate", "2", "--policies", "imgrec,keda,hpa,ray,fixed:1",
        "--set", "max_workers=3", "--json", str(out), "--chart", str(png), *GIVEN,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert list(data["policies"]) == ["imgrec", "keda", "hpa", "ray", "fixed:1"]
    for figures in data["policies"].values():
        assert FIGURES <= set(figures)
        assert figures["peak_workers"] <= 3
    assert data["model"]["cold_start_s"] == 0.7 and data["model"]["host_cores"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("imgrec", "keda", "hpa", "ray", "fixed:1"):
        assert name in result.output
    assert "simulated in" in result.output


def test_simulate_reads_a_csv_and_applies_per_policy_options(tmp_path):
    trace = tmp_path / "counts.csv"
    trace.write_text("count\n" + "\n".join(["5"] * 30 + ["0"] * 60) + "\n")
    out = tmp_path / "out.json"
    result = invoke("--trace", str(trace), "--csv", "second", "--json", str(out), "--chart", "", *GIVEN,
                    "--policies", "imgrec,imgrec:target_per_worker=1,scale_in_delay=5,keda:cooldown=60,fixed:1")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["trace"]["requests"] == 150 and data["trace"]["duration_s"] == 90
    assert list(data["policies"]) == ["imgrec", "imgrec:target_per_worker=1,scale_in_delay=5", "keda:cooldown=60", "fixed:1"]


def test_simulate_says_what_is_wrong():
    assert invoke("--set", "no_such=1", *GIVEN).exit_code == 2
    assert invoke("--set", "target_per_worker=zero", *GIVEN).exit_code == 2
    assert invoke("--policies", "kubernetes", "--chart", "", *GIVEN).exit_code == 2
    bad = invoke("--trace", "sawtooth", *GIVEN)
    assert bad.exit_code == 2 and "sawtooth" in bad.output


def test_cpu_beside_the_workers_slows_them_on_shared_cores(tmp_path):
    def p50(*extra: str) -> float:
        out = tmp_path / "out.json"
        args = ["--trace", "steady", "--duration", "300", "--rate", "20", "--policies", "fixed:2", "--chart", ""]
        given = ["--service", "0,0.02", "--cold-start", "0.5", "--json", str(out)]
        result = invoke(*args, *given, *extra)
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        return data["policies"]["fixed:2"]["p50_ms"], data["model"]["side_cpu_ms"]

    alone, shared = p50("--cores", "1"), p50("--cores", "1", "--side-cpu", "10")
    assert alone[1] == 0 and shared[1] == 10
    assert shared[0] > alone[0]  # 20 ms of a worker and 10 beside it per image: 1.5 cores' worth on one
    assert invoke("--side-cpu", "-1", *GIVEN).exit_code != 0
