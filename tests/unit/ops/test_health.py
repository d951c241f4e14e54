"""`imgrec health`: one check per role, for a container's HEALTHCHECK and a Kubernetes
probe; without a role, the role of the container's main process (tests/containers runs
it in the image for each role)."""

from __future__ import annotations

import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgrec import cli
from imgrec.ops.health import check, imgrec_processes, role_of
from imgrec.presence import Presence
from imgrec.settings import Settings
from imgrec.stores import open_store


@pytest.mark.parametrize(
    "argv, role",
    [
        (["/usr/local/bin/python3.11", "/usr/local/bin/imgrec", "worker"], "worker"),  # the image's ENTRYPOINT
        (["/usr/bin/python3", "-m", "imgrec", "worker", "--ready-file", "/tmp/r"], "worker"),  # an autoscaler's
        (["/sbin/docker-init", "--", "imgrec", "web"], "web"),  # docker run --init
        (["imgrec autoscaler"], "autoscaler"),  # the title it gives itself (setproctitle)
        (["imgrec", "autoscaler", "--max-workers", "0"], "autoscaler"),
        (["/usr/bin/python3", "-m", "imgrec.ops.health"], ""),
        (["redis-server", "*:6379"], ""),
        (["/opt/imgrec/venv/bin/imgrec"], ""),
    ],
)
def test_the_role_is_the_command_of_an_imgrec_command_line(argv, role):
    assert role_of(argv) == role


def fake_proc(tmp_path: Path, processes: dict[int, list[str]]) -> Path:
    for pid, argv in processes.items():
        (tmp_path / str(pid)).mkdir(parents=True)
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "self").mkdir(parents=True)
    return tmp_path


def test_the_main_process_is_the_oldest_imgrec_one(tmp_path):
    proc = fake_proc(tmp_path, {
        1: ["imgrec autoscaler"], 40: ["/usr/bin/python3", "-m", "imgrec", "worker"], 9: ["sh"],
        77: ["/usr/local/bin/python", "/usr/local/bin/imgrec", "health"],  # a check running beside this one
    })
    assert imgrec_processes(proc) == [(1, "autoscaler"), (40, "worker")]


def test_other_commands_have_nothing_to_check(tmp_path):
    healthy, why = check(Settings(data_dir=tmp_path), proc=fake_proc(tmp_path, {1: ["imgrec", "init"]}))
    assert healthy and why == "nothing to check for `imgrec init`"
    assert check(Settings(data_dir=tmp_path), proc=fake_proc(tmp_path / "none", {})) == (False, "no imgrec process runs here")


def test_a_worker_is_healthy_while_its_loop_turns(tmp_path):
    live = tmp_path / "alive"
    settings = Settings(data_dir=tmp_path, live_file=str(live))
    assert settings.hung_after == 2 * 10 * 16 + 30  # the autoscaler's limit for its own workers
    healthy, why = check(settings, "worker")
    assert healthy and "has not started its loop" in why  # loading its model
    live.touch()
    assert check(settings, "worker")[0]
    old = time.time() - settings.hung_after - 5
    os.utime(live, (old, old))
    healthy, why = check(settings, "worker")
    assert not healthy and why.startswith("the worker's loop last went round 355s ago")
    assert check(Settings(data_dir=tmp_path), "worker") == (
        False, "IMGREC_LIVE_FILE is not set: nothing tells whether the worker's loop turns"
    )


class Readyz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()
        self.wfile.write(b"the store does not answer" if self.status != 200 else b"{}")

    def log_message(self, *args) -> None:
        pass


def test_a_web_replica_is_healthy_when_ready(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings(data_dir=tmp_path, host="0.0.0.0", port=server.server_address[1])
        healthy, why = check(settings, "web")
        assert healthy and why.endswith("/readyz: 200") and "127.0.0.1" in why
        Readyz.status = 503
        assert check(settings, "web") == (False, f"http://127.0.0.1:{settings.port}/readyz: 503 the store does not answer")
    finally:
        Readyz.status = 200
        server.shutdown()
        server.server_close()
    healthy, why = check(settings, "web")
    assert not healthy and "Connection refused" in why


def test_an_autoscaler_is_healthy_while_its_heartbeat_is_fresh(tmp_path):
    settings = Settings(data_dir=tmp_path)
    proc = fake_proc(tmp_path / "proc", {1: ["imgrec autoscaler"]})
    healthy, why = check(settings, "", proc)
    assert not healthy and why == f"no heartbeat of autoscaler {socket.gethostname()}-1 in the store"
    beat = Presence(open_store(settings.store_url), "autoscaler", f"{socket.gethostname()}-1")
    beat.write("running")
    healthy, why = check(settings, "", proc)
    assert healthy and why.startswith(f"autoscaler {socket.gethostname()}-1: heartbeat")
    beat.write("stopped")
    healthy, why = check(settings, "autoscaler", proc)
    assert not healthy and "heartbeat stopped" in why


def test_the_command_exits_0_or_1_and_refuses_an_unknown_role(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGREC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IMGREC_LIVE_FILE", str(tmp_path / "alive"))
    runner = CliRunner()
    out = runner.invoke(cli.app, ["health", "worker"])
    assert out.exit_code == 0 and "has not started its loop" in out.output
    old = time.time() - 3600
    (tmp_path / "alive").touch()
    os.utime(tmp_path / "alive", (old, old))
    assert runner.invoke(cli.app, ["health", "worker"]).exit_code == 1
    out = runner.invoke(cli.app, ["health", "up"])
    assert out.exit_code != 0 and "no health check for 'up'" in str(out.exception)


def test_an_autoscalers_own_workers_touch_no_live_file(tmp_path):
    """It watches them itself (heartbeats, loops): a live file set for its container (the
    image sets one) is not theirs, and its idle timeout replaces the image's `inf`."""
    from imgrec.autoscaler.main import worker_settings

    settings = Settings(data_dir=tmp_path, live_file="/tmp/imgrec-alive", worker_idle_timeout=float("inf"))
    theirs = worker_settings(settings)
    assert theirs.live_file == "" and theirs.worker_idle_timeout < float("inf")
    assert theirs.to_env()["IMGREC_LIVE_FILE"] == ""
