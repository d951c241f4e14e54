"""The Dockerfile, checked offline (no image is built here): parsed, its stages named,
the runtime stage serving-only and non-root, its health check on the app's /readyz."""

from __future__ import annotations

import json
import re

from deployfiles import ROOT, check_command, dockerfile_stages, env_pairs, settings_from
from imgrec.settings import Settings
from imgrec.web.routes import router

STAGES = dockerfile_stages(ROOT / "Dockerfile")
RUNTIME = STAGES[-1]


def test_three_named_stages_the_last_shipped():
    assert [s.name for s in STAGES] == ["wheel", "model", "runtime"]
    assert len({s.base for s in STAGES}) == 1, "one base image for all"


def test_the_model_is_exported_in_a_build_stage_and_copied_in():
    model = STAGES[1]
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
    (health,) = RUNTIME.all("HEALTHCHECK")
    probe = json.loads(health.split(" CMD ", 1)[1])
    assert probe[:2] == ["python", "-c"]
    assert "/readyz" in probe[2] and "/readyz" in {r.path for r in router.routes}
    assert f"os.environ.get('IMGREC_PORT', '{Settings().port}')" in probe[2]
    assert json.loads(RUNTIME.all("ENTRYPOINT")[0]) == ["imgrec"]
    assert check_command(json.loads(RUNTIME.all("CMD")[0])) == "web"


def test_what_the_build_copies_is_in_the_repository_and_not_ignored():
    sources = [w for s in STAGES for c in s.all("COPY") if "--from" not in c for w in c.split()[:-1]]
    assert sources == ["pyproject.toml", "README.md", "src"]
    assert all((ROOT / s).exists() for s in sources)
    ignored = [line for line in (ROOT / ".dockerignore").read_text().split("\n") if line and not line.startswith("#")]
    assert ignored[0] == "*" and {f"!{s}" for s in ("pyproject.toml", "README.md", "src/")} <= set(ignored)
