"""The Dockerfile, checked offline (tests/containers builds and runs it): parsed, its
stages named, no torch anywhere, its build arguments (the base, the index, a CA bundle),
the runtime stage serving-only and non-root, one health check that fits every role."""

from __future__ import annotations

import json
import re

from deployfiles import ROOT, check_command, dockerfile_stages, env_pairs, settings_from
from imgrec.settings import Settings
from imgrec.web.routes import router

STAGES = dockerfile_stages(ROOT / "Dockerfile")
RUNTIME = STAGES[-1]


def test_four_named_stages_on_one_base_the_last_shipped():
    assert [s.name for s in STAGES] == ["base", "wheel", "model", "runtime"]
    assert STAGES[0].base == "${PYTHON_IMAGE}" and {s.base for s in STAGES[1:]} == {"base"}, "one base image for all"


def test_no_syntax_line_and_the_build_arguments():
    """No `# syntax=` directive (it makes the builder fetch a frontend image from a
    registry); the base image, the package index and a CA bundle are build arguments."""
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    preamble = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("ARG ")][:2]
    assert [a.split("=")[0] for a in preamble] == ["PYTHON_IMAGE", "PIP_INDEX_URL"]
    assert preamble[1] == "PIP_INDEX_URL=https://pypi.org/simple", "pip's own variable, with pip's default"
    for stage in STAGES:  # an ARG's scope is its stage: each one that runs pip names it again
        if any("pip " in r for r in stage.all("RUN")):
            assert "PIP_INDEX_URL" in stage.all("ARG"), stage.name
    (base_run,) = STAGES[0].all("RUN")
    assert STAGES[0].all("ARG") == ["CA_CERTS="]
    assert "update-ca-certificates" in base_run and "cert = /etc/ssl/certs/ca-certificates.crt" in base_run


def test_no_torch_anywhere():
    """The model is built with numpy and onnx (the export extra), so no stage installs torch."""
    text = (ROOT / "Dockerfile").read_text().lower()
    instructions = " ".join(arg for s in STAGES for _, arg in s.instructions).lower()
    assert "torch" not in instructions and "torch_index_url" not in text


def test_the_model_is_exported_in_a_build_stage_and_copied_in():
    model = STAGES[2]
    assert any("[export]" in r for r in model.all("RUN")) and any("imgrec model build" in r for r in model.all("RUN"))
    (copied,) = [c for c in RUNTIME.all("COPY") if "--from=model" in c]
    source, target = copied.split()[-2:]
    env = {k: v for e in RUNTIME.all("ENV") for k, v in env_pairs(e).items()}
    assert source == "/model" and env["IMGREC_MODEL_DIR"] == target


def test_the_runtime_stage_is_serving_only_and_not_root():
    runs = " ".join(RUNTIME.all("RUN"))
    assert "torch" not in runs.lower() and "[export" not in runs and "test" not in runs
    assert re.search(r"imgrec-\*\.whl\)\[aws,redis\]", runs), "the serving install, with the adapters' extras"
    (user,) = RUNTIME.all("USER")
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit()
    assert "--uid " + user.split(":")[0] in runs


def test_settings_ports_and_probe_match_the_app():
    env = {k: v for e in RUNTIME.all("ENV") for k, v in env_pairs(e).items()}
    settings = settings_from(env)  # every IMGREC_ variable is a setting, with a valid value
    assert RUNTIME.all("EXPOSE") == [str(settings.port)]
    assert json.loads(RUNTIME.all("ENTRYPOINT")[0]) == ["imgrec"]
    assert check_command(json.loads(RUNTIME.all("CMD")[0])) == "web"
    # One health check for every role: `imgrec health` finds the container's role itself.
    (health,) = RUNTIME.all("HEALTHCHECK")
    probe = json.loads(health.split(" CMD ", 1)[1])
    assert probe[0] == "imgrec" and check_command(probe[1:]) == "health" and probe[1:] == ["health"]
    assert "/readyz" in {r.path for r in router.routes}  # what it asks a web replica
    timeout = re.search(r"--timeout=(\d+)s", health)
    assert timeout and int(timeout.group(1)) >= 5, "room for a look at the store (the autoscaler's heartbeat)"


def test_a_worker_in_the_image_never_stops_by_itself_and_says_its_loop_turns():
    """Whatever runs the container decides when a worker stops (and would only start it
    again); the worker touches its live file, which the health check looks at."""
    env = {k: v for e in RUNTIME.all("ENV") for k, v in env_pairs(e).items()}
    settings = settings_from(env)
    assert settings.worker_idle_timeout == float("inf") and Settings().worker_idle_timeout < float("inf")
    assert settings.live_file.startswith("/tmp/"), "a place the worker may write (an emptyDir in Kubernetes)"


def test_dependencies_are_installed_before_the_wheel_in_a_layer_of_their_own():
    """A change to src/ (or to pyproject.toml but its lists of dependencies) rebuilds the
    wheel and the model, and downloads nothing again: each install's requirements file is
    copied on its own, and Docker's cache looks at its content."""
    (listed,) = [r for r in STAGES[1].all("RUN") if "tomllib" in r]
    assert 'for install in "export" "aws redis"' in listed
    for stage, extras in ((STAGES[2], "export"), (RUNTIME, "aws-redis")):
        steps = stage.instructions
        copied = steps.index(("COPY", f"--from=wheel /requirements/{extras}.txt /tmp/requirements.txt"))
        kind, deps = steps[copied + 1]
        assert kind == "RUN" and deps.startswith("pip install -r /tmp/requirements.txt")
        wheel = next(i for i, (k, a) in enumerate(steps) if k == "COPY" and "--from=wheel /wheels" in a)
        assert copied < wheel
    wheel_steps = STAGES[1].instructions
    assert wheel_steps.index(("COPY", "src ./src")) > wheel_steps.index(("RUN", listed)), "src/ after the lists"


def test_what_the_build_copies_is_in_the_repository_and_not_ignored():
    sources = [w for s in STAGES for c in s.all("COPY") if "--from" not in c for w in c.split()[:-1]]
    assert sources == ["pyproject.toml", "README.md", "src"]
    assert all((ROOT / s).exists() for s in sources)
    ignored = [line for line in (ROOT / ".dockerignore").read_text().split("\n") if line and not line.startswith("#")]
    assert ignored[0] == "*" and {f"!{s}" for s in ("pyproject.toml", "README.md", "src/")} <= set(ignored)
