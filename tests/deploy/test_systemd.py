"""deploy/systemd and deploy/ec2, checked offline: each unit's command parsed by the real
CLI, its variables settings, its stop timeout long enough, a configuration error not
restarted for ever; systemd's own verifier where it is installed; the user data's
syntax, and the unit it writes the same as the repository's."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from deployfiles import DEPLOY, check_command, settings_from
from imgrec.lab.harness import IMGREC

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ROLES = {"imgrec-web.service": "web", "imgrec-worker@.service": "worker", "imgrec-autoscaler.service": "autoscaler"}
CONFIG_ERROR_EXIT = 2  # what `imgrec` exits with on a configuration error (cli.run)


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_a_unit_per_role():
    assert [p.name for p in UNITS] == sorted(ROLES)


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_units_run_real_commands_with_real_settings(path):
    service = unit(path)["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/imgrec/venv/bin/imgrec" and check_command(argv[1:]) == ROLES[path.name]
    assert service["EnvironmentFile"] == "/etc/imgrec/imgrec.env"
    env = env_file(DEPLOY / "systemd" / "imgrec.env")
    env.update(dict(e.split("=", 1) for e in shlex.split(service.get("Environment", ""))))
    settings = settings_from(env)
    assert service["User"] == "imgrec" and str(settings.data_dir) == f"/var/lib/{service['StateDirectory']}"
    assert service["RestartPreventExitStatus"] == str(CONFIG_ERROR_EXIT)
    stop = float(service["TimeoutStopSec"])
    role = ROLES[path.name]
    if role == "web":
        assert stop > settings.request_timeout
    elif role == "worker":
        assert stop >= settings.max_batch * settings.image_timeout and settings.worker_idle_timeout == float("inf")
    else:
        assert stop >= settings.visibility_timeout + 10 and service["KillMode"] == "mixed"


def test_a_configuration_error_exits_with_the_status_the_units_do_not_restart(tmp_path):
    out = subprocess.run(
        [IMGREC, "worker"],
        env={"IMGREC_QUEUE": "nope://x", "PATH": "/usr/bin:/bin", "IMGREC_DATA_DIR": str(tmp_path)},
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == CONFIG_ERROR_EXIT


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not on this machine")
def test_systemd_finds_nothing_wrong(tmp_path):
    """systemd's verifier, on copies that point at this machine's imgrec and env file."""
    copies = []
    for path in UNITS:
        text = path.read_text().replace("/opt/imgrec/venv/bin/imgrec", IMGREC)
        text = text.replace("/etc/imgrec/imgrec.env", str(DEPLOY / "systemd" / "imgrec.env"))
        copy = tmp_path / path.name.replace("@.", "@1.")  # a template is verified as an instance
        copy.write_text(text)
        copies.append(str(copy))
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", *copies], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_the_ec2_user_data_installs_the_serving_wheel_and_the_worker_unit():
    script = (DEPLOY / "ec2" / "user-data.sh").read_text()
    subprocess.run(["bash", "-n", str(DEPLOY / "ec2" / "user-data.sh")], check=True)
    assert script.startswith("#!/bin/bash\n") and "set -euo pipefail" in script
    written_unit = script.split("<<'UNIT'\n", 1)[1].split("\nUNIT\n", 1)[0] + "\n"
    assert written_unit == (DEPLOY / "systemd" / "imgrec-worker@.service").read_text()
    written_env = script.split("<<'ENV'\n", 1)[1].split("\nENV\n", 1)[0]
    settings = settings_from(dict(line.split("=", 1) for line in written_env.splitlines()))
    assert settings.queue_url.startswith("sqs://") and settings.store_url.startswith("s3://")
    assert '[aws]"' in script and "[export" not in script and "torch" not in script
