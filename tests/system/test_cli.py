"""The `imgrec` command as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from images import PHOTOS, SKIMAGE_DATA, write_folder
from imgrec.lab.harness import IMGREC


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([IMGREC, *args], capture_output=True, text=True, timeout=300)


def test_classify_prints_name_label(tmp_path):
    files = []
    for name in PHOTOS:
        files.append(tmp_path / name)
        shutil.copy(SKIMAGE_DATA / name, files[-1])
    out = run("classify", *map(str, files))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{Path(n).stem}:{label}" for n, label in PHOTOS.items()]


def test_classify_json_and_bad_file(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("hello")
    good = tmp_path / "coffee.png"
    shutil.copy(SKIMAGE_DATA / "coffee.png", good)
    out = run("classify", "--json", str(good), str(bad))
    assert out.returncode == 1
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    assert first["label"] == "espresso" and len(first["top"]) == 5
    assert "not an image" in second["error"]


def test_eval_reports_accuracy_and_mistakes(tmp_path):
    folder = write_folder(
        tmp_path / "set", {name: (SKIMAGE_DATA / name).read_bytes() for name in PHOTOS}
    )
    # coffee is labelled "cup" (968) on purpose: one mistake to report.
    (folder / "labels.csv").write_text(
        "filename,class_index,name\nchelsea.png,282,tiger cat\ncoffee.png,968,cup\nrocket.jpg,657,missile\n"
    )
    out = run("eval", str(folder))
    assert out.returncode == 0, out.stderr
    assert "top-1: 0.6667" in out.stdout
    assert "coffee.png: expected cup, got espresso" in out.stdout
    assert "images/s:" in out.stdout


def test_bench_engine_prints_ratios(tmp_path):
    folder = write_folder(tmp_path / "b", {name: (SKIMAGE_DATA / name).read_bytes() for name in PHOTOS})
    out = run("bench", "engine", str(folder), "--rounds", "1")
    assert out.returncode == 0, out.stderr
    ratios = re.findall(r"(\d+\.\d\d)x", out.stdout)
    assert len(ratios) == 3 and all(float(r) > 0 for r in ratios), out.stdout


def test_bench_e2e_reports_and_charts(tmp_path):
    """A small run of the end-to-end benchmark: the report has every figure, the chart exists."""
    from images import photo_variants

    folder = write_folder(tmp_path / "imgs", photo_variants(12))
    out = run("bench", "e2e", str(folder), "--requests", "24", "--concurrency", "8", "--sweep", "1,8",
              "--rounds", "1", "--out", str(tmp_path / "report"))
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "report" / "e2e.json").read_text())
    assert report["lost_or_5xx_or_wrong"] == 0 and report["main"]["ok"] == 24 and report["rounds"] == 1
    assert report["ratio_to_bare"] > 0 and report["cold_start_seconds"] > 0
    assert set(report["stages_ms_per_image"]) >= {"web.parse", "worker.decode", "worker.inference", "worker.queue_wait"}
    idle = report["idle_stages_ms_per_image"]  # an idle request's time, stage by stage
    assert set(idle) == set(report["stages_ms_per_image"]) and idle["worker.inference"] > 0
    assert idle["web.wait_for_reply"] >= idle["worker.inference"]
    assert [s["concurrency"] for s in report["sweep"]] == [1, 8]
    assert (tmp_path / "report" / "e2e.png").read_bytes()[:4] == b"\x89PNG"
    assert "ratio" in out.stdout
    # CPU accounted: the machine's busy share and CPU per image by process, beside both bare pipelines.
    assert 0 < report["cpu"]["cpu_busy"] <= 1
    assert report["cpu"]["cpu_ms_per_image"]["worker"] > 0 and report["cpu"]["cpu_ms_per_image"]["web"] > 0
    assert [b["cpu_ms_per_image"] > 0 for b in report["bare"].values()] == [True, True]
    assert list(report["bare"]) == ["plain fp32 (Pillow, no draft)", "engine lite0"]
    assert [t["target"].split(" ")[0] for t in report["targets"]] == ["lite0", "CPU", "idle", "cold"]
    assert all(t["passed"] in (True, False) for t in report["targets"])
    assert "targets" in out.stdout and ("pass" in out.stdout or "FAIL" in out.stdout)


def test_bench_replay_sets_live_figures_beside_the_simulation(tmp_path):
    """A tiny replay: the report has both sides' figures for the trace (the agreement itself
    is a benchmark on a quiet machine, recorded in docs/replay.json)."""
    import os

    env = {**os.environ, "IMGREC_DATA_DIR": str(tmp_path), "IMGREC_SCALE_IN_DELAY": "1", "IMGREC_SCALE_TO_ZERO_DELAY": "2"}
    args = ["bench", "replay", "steady", "--duration", "4", "--rate", "3", "--starts", "1", "--repeats", "2",
            "--out", str(tmp_path)]
    out = subprocess.run([IMGREC, *args], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "replay.json").read_text())
    steady = report["shapes"]["steady"]
    model = report["model"]  # calibrated on the live service, the load client's CPU beside the workers included
    assert model["overhead_ms"] > 0 and model["cold_start_s"] > 0 and model["side_cpu_ms"] > 0
    assert len(report["calibrations"]) == 2 and report["calibrations"][0] == model  # one before each round
    assert len(model["start_ups_s"]) == 1 and steady["simulated"]["runs"] == 2 * report["phases"]
    assert steady["live"]["answered"] == steady["live"]["requests"] > 0
    assert len(steady["live_runs"]) == steady["live"]["runs"] == 2  # two live runs, pooled
    assert all(r["answered"] == r["requests"] for r in steady["live_runs"])
    assert steady["live"]["worker_seconds"] > 0 and steady["simulated"]["worker_seconds"] > 0
    assert set(steady["difference"]) == {"worker_seconds", "p99_ms"} and "agree" in out.stdout
