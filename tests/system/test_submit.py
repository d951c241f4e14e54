"""`imgrec submit` against a running service, and `imgrec classify` on folders, as a
user runs them: real processes, real images."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import httpx
import pytest

from images import photo_variants, write_folder
from imgrec.client.files import chunks, image_files
from imgrec.lab.harness import IMGREC, ServiceProcess, wait_until
from servers import TcpProxy


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_dir):
    svc = ServiceProcess(tmp_path_factory.mktemp("submit"), model_dir, "--max-workers", "2",
                         env={"IMGREC_MAX_FILES_PER_REQUEST": "7"})
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, classifier):
    """30 photographs in a folder tree, with a text file among them, and their labels."""
    variants = photo_variants(30)
    root = tmp_path_factory.mktemp("photos")
    write_folder(root / "a", dict(list(variants.items())[:20]))
    write_folder(root / "a" / "b", dict(list(variants.items())[20:]))
    (root / "a" / "readme.txt").write_text("not an image, and not sent")
    labels = {n: r.label for n, r in zip(variants, classifier.classify(list(variants.values())), strict=True)}
    return root / "a", labels


def _submit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([IMGREC, "submit", *args], capture_output=True, text=True, timeout=timeout)


def _uploads(url: str) -> float:
    """Upload requests the service has parsed so far (from its own metrics)."""
    text = httpx.get(url + "/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('imgrec_web_stage_seconds_count{stage="parse"}'))


def test_a_folder_goes_in_requests_within_the_limits_and_comes_back_as_rows(service, folder, tmp_path):
    root, labels = folder
    before = _uploads(service.url)
    out = _submit(str(root), "--url", service.url, "--csv", str(tmp_path / "out.csv"))
    assert out.returncode == 0, out.stdout + out.stderr
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 30 and set(rows[0]) >= {"filename", "label", "class_index", "score", "error"}
    assert {r["filename"].rsplit("/", 1)[1]: r["label"] for r in rows} == labels
    assert _uploads(service.url) - before == 5, "30 files, at most 7 a request"
    again = _submit(str(root), "--url", service.url, "--csv", str(tmp_path / "out.csv"))
    assert again.returncode == 0 and _uploads(service.url) - before == 5, "a second run sends nothing"


def test_an_interrupted_run_sends_only_what_is_missing(service, folder, tmp_path):
    """The run is cut while its second request is on its way: a proxy lets the first request
    through, then holds every byte, so exactly one request reached the service when the
    run is killed, whatever the machine's speed. The run after it collects the first
    request's results by its batch and sends the other four, and nothing again."""
    root, labels = folder
    groups, _ = chunks(image_files([root]), 7, 20 * 2**20)
    first, second = (sum(f.stat().st_size for f in g) for g in groups[:2])
    proxy = TcpProxy(("127.0.0.1", service.port))
    proxy.freeze_after(first + second // 2)  # the second upload never arrives whole
    before = _uploads(service.url)
    run = subprocess.Popen([IMGREC, "submit", str(root), "--url", f"http://127.0.0.1:{proxy.port}", "--json",
                            str(tmp_path / "r.json"), "--concurrency", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = tmp_path / "r.json.imgrec-state.json"
    wait_until(lambda: state.exists() and sum("batch_id" in e for e in json.loads(state.read_text())["files"].values()) == 7,
               60, 0.05, "the first request accepted and recorded")
    wait_until(lambda: proxy.budget == 0, 60, 0.05, "the second request held")
    run.send_signal(signal.SIGKILL)  # as abrupt as it gets: the state file is written atomically
    run.wait(30)
    proxy.stop()  # the held upload is cut, then the same address works again
    assert _uploads(service.url) - before == 1
    proxy.thaw()
    proxy.start()
    out = _submit(str(root), "--url", f"http://127.0.0.1:{proxy.port}", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "r.json").read_text())
    assert {r["filename"].rsplit("/", 1)[1]: r["label"] for r in rows} == labels
    assert _uploads(service.url) - before == 5, "only the missing requests: the first is collected by its batch"


def test_a_service_that_goes_away_for_a_while_costs_time_not_results(service, folder, tmp_path):
    root, labels = folder
    proxy = TcpProxy(("127.0.0.1", service.port))
    proxy.stop()  # down when the run starts; back a few seconds later
    run = subprocess.Popen([IMGREC, "submit", str(root), "--url", f"http://127.0.0.1:{proxy.port}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proxy.start()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines == {name.rsplit(".", 1)[0]: label for name, label in labels.items()}, "name:label lines"


def test_any_failure_makes_the_exit_status_non_zero(service, tmp_path):
    folder = write_folder(tmp_path / "mixed", photo_variants(3))
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    out = _submit(str(folder), "--url", service.url, "--csv", str(tmp_path / "m.csv"))
    assert out.returncode == 1 and "3 classified, 1 failed" in out.stderr
    broken = [r for r in csv.DictReader((tmp_path / "m.csv").open()) if r["error"]]
    assert [r["filename"].rsplit("/", 1)[1] for r in broken] == ["broken.jpg"] and "not an image" in broken[0]["error"]


def test_classify_takes_folders_in_flat_memory(tmp_path, classifier):
    folder = write_folder(tmp_path / "many", photo_variants(300))
    # A parent of its own, so that its children's peak is this command's alone.
    measure = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", measure, IMGREC, "classify", str(folder), "--csv", str(tmp_path / "c.csv"),
                          "--json-file", str(tmp_path / "c.json")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    peak_mb = int(out.stdout.split()[-1]) / 1024
    assert peak_mb < 400, f"classify of 300 images peaked at {peak_mb:.0f} MB"
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert len(rows) == 300 and len(json.loads((tmp_path / "c.json").read_text())) == 300
    assert all(r["label"] and not r["error"] for r in rows)
