"""Each flag sets the setting of its name, built once and passed down."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from imgrec import cli
from imgrec.lab.harness import IMGREC


@pytest.fixture
def captured(monkeypatch):
    """Run a command with its entry point replaced by one that records the settings."""
    seen = {}

    def record(name):
        return lambda settings, *a: seen.setdefault(name, settings) and 0

    import imgrec.autoscaler.main
    import imgrec.supervisor
    import imgrec.web
    import imgrec.worker

    monkeypatch.setattr(imgrec.supervisor, "run_up", record("up"))
    monkeypatch.setattr(imgrec.web, "run_web", record("web"))
    monkeypatch.setattr(imgrec.worker, "run_worker", record("worker"))
    monkeypatch.setattr(imgrec.autoscaler.main, "run_autoscaler", record("autoscaler"))

    def run(*args: str):
        result = CliRunner().invoke(cli.app, list(args))
        assert result.exit_code == 0, result.output
        return seen[args[0]], result.output

    return run


def test_flags_override_the_environment(captured, monkeypatch):
    monkeypatch.setenv("IMGREC_PORT", "9001")
    monkeypatch.setenv("IMGREC_MAX_BATCH", "3")
    s, _ = captured("up", "--max-workers", "5", "--scale-in-delay", "7")
    assert (s.port, s.max_batch, s.max_workers, s.scale_in_delay) == (9001, 3, 5, 7.0)
    s, _ = captured("web", "--port", "8123", "--host", "0.0.0.0")
    assert (s.port, s.host) == (8123, "0.0.0.0")


def test_idle_timeout_means_the_worker_idle_timeout_for_a_worker(captured):
    s, _ = captured("worker", "--idle-timeout", "11")
    assert s.worker_idle_timeout == 11.0 and s.scale_in_delay == 10.0


def test_the_old_idle_timeout_of_up_and_autoscaler_still_works(captured):
    s, out = captured("autoscaler", "--idle-timeout", "9", "--min-workers", "1")
    assert s.scale_in_delay == 9.0 and s.min_workers == 1 and "--scale-in-delay" in out


def test_a_bad_setting_is_one_clear_line(tmp_path):
    out = subprocess.run([IMGREC, "web"], env={"IMGREC_PORT": "eighty", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "IMGREC_PORT" in out.stderr and "Traceback" not in out.stderr
