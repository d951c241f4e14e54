"""`imgrec submit` against a running service, and `imgrec classify` on folders, as a
user runs them: real processes, real images."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from images import photo_variants, write_folder
from imgrec.client.files import chunks, image_files
from imgrec.lab.harness import IMGREC, Part, ServiceProcess, WebPart, free_port, service_env, wait_until
from servers import TcpProxy

NOT_IMAGES = ("readme.txt", ".DS_Store", "IMG_0001.HEIC")


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    """Each test's runs keep their state in a state directory of its own (as
    $XDG_STATE_HOME), never in the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "imgrec" / "submit"


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_dir):
    svc = ServiceProcess(tmp_path_factory.mktemp("submit"), model_dir, "--max-workers", "2",
                         env={"IMGREC_MAX_FILES_PER_REQUEST": "7"})
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, classifier):
    """30 photographs in a folder tree, with files that are not images among them, and
    their labels."""
    variants = photo_variants(30)
    root = tmp_path_factory.mktemp("photos")
    write_folder(root / "a", dict(list(variants.items())[:20]))
    write_folder(root / "a" / "b", dict(list(variants.items())[20:]))
    for name in NOT_IMAGES:
        (root / "a" / "b" / name).write_text("not an image, and not sent")
    labels = {n: r.label for n, r in zip(variants, classifier.classify(list(variants.values())), strict=True)}
    return root / "a", labels


@pytest.fixture(scope="module")
def keyed_web(tmp_path_factory, model_dir):
    """`imgrec web` alone, with an API key and no worker: what it accepts waits in its queue
    until a test starts one (`worker`)."""
    data = tmp_path_factory.mktemp("keyed")
    web = WebPart(data / "web.log", service_env(data, model_dir, api_keys="k1"))
    yield web
    web.stop()


def _env_of(part, **variables: str) -> dict[str, str]:
    """This test's environment (its state directory) with a part's settings and `variables`."""
    return {**os.environ, **{k: v for k, v in part.env.items() if k.startswith("IMGREC_")}, **variables}


def _submit(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([IMGREC, "submit", *args], capture_output=True, text=True, timeout=timeout, env=env)


def _uploads(url: str, headers: dict | None = None) -> float:
    """Upload requests the service has parsed so far (from its own metrics)."""
    text = httpx.get(url + "/metrics", headers=headers).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('imgrec_web_stage_seconds_count{stage="parse"}'))


def _requests_to(url: str, route: str, headers: dict | None = None) -> float:
    """Requests the service has answered on a route so far (from its own metrics)."""
    text = httpx.get(url + "/metrics", headers=headers).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("imgrec_http_requests_total{") and f'route="{route}"' in line)


def _next_line(stream, timeout: float) -> str:
    """The next line a process writes to `stream`, waited for at most `timeout` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no line in {timeout} s") from None


def test_a_folder_goes_in_requests_within_the_limits_and_comes_back_as_rows(service, folder, tmp_path, state_home):
    root, labels = folder
    before = _uploads(service.url)
    out = _submit(str(root), "--url", service.url, "--csv", str(tmp_path / "out.csv"))
    assert out.returncode == 0, out.stdout + out.stderr
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 30 and set(rows[0]) >= {"filename", "label", "class_index", "score", "error"}
    assert {r["filename"].rsplit("/", 1)[1]: r["label"] for r in rows} == labels
    assert _uploads(service.url) - before == 5, "30 files, at most 7 a request"
    assert "skipped 3 files (not images by their extension); --verbose lists them" in out.stderr
    again = _submit(str(root), "--url", service.url, "--csv", str(tmp_path / "out.csv"), "--verbose")
    assert again.returncode == 0 and _uploads(service.url) - before == 5, "a second run sends nothing"
    listed = sorted(line.rsplit("/", 1)[1] for line in again.stderr.splitlines() if line.startswith("  skipped: "))
    assert listed == sorted(NOT_IMAGES)


def test_submit_writes_the_columns_of_the_service_s_own_csv(service, folder, tmp_path, state_home):
    root, _ = folder
    out = _submit(str(root / "b"), "--url", service.url, "--csv", str(tmp_path / "b.csv"))
    assert out.returncode == 0, out.stderr
    (state,) = state_home.glob("*.json")
    batch_id = next(e["batch_id"] for e in json.loads(state.read_text())["files"].values())
    served = httpx.get(f"{service.url}/api/v1/batches/{batch_id}", params={"format": "csv"}).text
    mine = (tmp_path / "b.csv").read_text()
    assert next(csv.reader(io.StringIO(mine))) == next(csv.reader(io.StringIO(served)))


def test_a_service_out_of_reach_is_said_at_once_then_given_up_on_in_one_line(folder, tmp_path):
    root, _ = folder
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run = subprocess.Popen([IMGREC, "submit", str(root), "--url", nowhere, "--give-up-after", "8"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = _next_line(run.stderr, 30)
    assert run.poll() is None, "said while it retries, long before it gives up"
    assert first.startswith(f"cannot reach {nowhere} (ConnectError") and "retrying for up to 8 s" in first
    _, rest = run.communicate(timeout=60)
    assert run.returncode == 3
    assert "Traceback" not in rest and len(rest.splitlines()) <= 4, rest
    assert f"imgrec submit: cannot reach {nowhere}" in rest and "gave up after 8 s" in rest
    assert "run the same command again" in rest


def test_a_key_the_service_wants_is_one_line_naming_the_client_s_variable(keyed_web, folder):
    root, _ = folder
    env = {k: v for k, v in _env_of(keyed_web).items() if k not in ("IMGREC_CLIENT_KEY", "IMGREC_API_KEY")}
    out = _submit(str(root), "--url", keyed_web.url, env=env)  # IMGREC_API_KEYS is set here: the service's
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("imgrec submit:")]
    assert "IMGREC_CLIENT_KEY" in line and "IMGREC_API_KEYS is the service's list of keys" in line
    debug = _submit(str(root), "--url", keyed_web.url, "--debug", env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_ctrl_c_writes_what_was_answered_and_the_same_command_sends_only_the_rest(
    keyed_web, model_dir, tmp_path, state_home
):
    """No worker runs while the first run waits: only the file the service refused at once
    is answered when Ctrl-C comes. The same command, once a worker runs, collects the
    rest by their batches and sends nothing; its speed counts none of them (it sent none)."""
    folder = write_folder(tmp_path / "few", photo_variants(3))
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    key = {"X-API-Key": "k1"}
    here = tmp_path / "cwd"
    here.mkdir()
    command = [IMGREC, "submit", str(folder), "--url", keyed_web.url, "--csv", str(tmp_path / "few.csv")]
    polls = _requests_to(keyed_web.url, "/api/v1/batches/{batch_id}", key)
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=here,
                           env=_env_of(keyed_web, IMGREC_CLIENT_KEY="k1"))
    # Two looks at its batches: what the first said (broken.jpg refused) is recorded.
    wait_until(lambda: _requests_to(keyed_web.url, "/api/v1/batches/{batch_id}", key) >= polls + 2, 60, 0.05,
               "the run looking at its batches")
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 130, err
    assert "interrupted: 1 of 4 answered (written to " in err and "run the same command again" in err
    rows = list(csv.DictReader((tmp_path / "few.csv").open()))
    assert [r["filename"].rsplit("/", 1)[1] for r in rows] == ["broken.jpg"] and "not an image" in rows[0]["error"]
    assert list(here.iterdir()) == [] and len(list(state_home.glob("*.json"))) == 1, "its state is in the state dir"

    worker = Part(tmp_path / "worker.log", _env_of(keyed_web), "worker")
    try:
        sent = _uploads(keyed_web.url, key)
        again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=here,
                               env=_env_of(keyed_web, IMGREC_API_KEY="k1"))  # the older name still works
    finally:
        worker.stop()
    assert again.returncode == 1, again.stderr  # broken.jpg failed
    assert _uploads(keyed_web.url, key) == sent, "nothing sent again"
    rows = list(csv.DictReader((tmp_path / "few.csv").open()))
    assert len(rows) == 4 and sum(bool(r["label"]) for r in rows) == 3
    assert re.search(r"3 classified, 1 failed, in [0-9.]+ s \(0 sent and answered in this run, 0\.0 images/s", again.stderr)


def test_an_interrupted_run_sends_only_what_is_missing(service, folder, tmp_path, state_home):
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

    def state_says(key: str) -> int:
        return sum(key in e for state in state_home.glob("*.json") for e in json.loads(state.read_text())["files"].values())

    wait_until(lambda: state_says("batch_id") == 7, 60, 0.05, "the first request accepted and recorded")
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
