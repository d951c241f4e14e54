"""deploy/compose, checked offline (no container runs here): the file against the compose
specification's schema, and every variable, command, port, probe and limit against
imgrec itself and nginx's configuration."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from deployfiles import DEPLOY, check_command, settings_from
from imgrec.web.routes import router

COMPOSE = DEPLOY / "compose" / "compose.yaml"
NGINX = (DEPLOY / "compose" / "nginx.conf").read_text()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # YAML merge keys (<<) resolved, as compose does


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_the_file_follows_the_compose_specification(compose):
    schema = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)


def test_imgrec_services_use_real_settings_and_commands(services):
    imgrec = {name: s for name, s in services.items() if s.get("image", "").startswith("imgrec:")}
    assert set(imgrec) == {"init", "web", "autoscaler", "status"}
    for name, service in imgrec.items():
        settings_from(service["environment"])  # every IMGREC_ variable exists, each value valid
        assert check_command(service["command"]) == name
        assert service["build"]["context"] == "../.." and (COMPOSE.parent / "../../Dockerfile").is_file()


def test_redis_keeps_its_data(services):
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


def test_one_autoscaler_and_the_init_before_the_others(services):
    assert services["autoscaler"].get("deploy", {}).get("replicas", 1) == 1
    for name in ("web", "autoscaler"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["init"]["restart"] == "no"


def test_two_web_replicas_behind_nginx_on_the_right_port(services):
    web = services["web"]
    settings = settings_from(web["environment"])
    assert web["deploy"]["replicas"] == 2
    assert re.search(rf"server web:{settings.port}\b", NGINX)
    (listen,) = re.findall(r"listen (\d+);", NGINX)
    assert services["nginx"]["ports"] == [f"8080:{listen}"]
    # The image's HEALTHCHECK (imgrec health) fits each long-running role: /readyz for a
    # web replica, the heartbeat for the autoscaler; the one-shot commands need none.
    assert "healthcheck" not in web and "healthcheck" not in services["autoscaler"]
    for name in ("init", "status"):
        assert services[name]["healthcheck"] == {"disable": True}


def test_nginx_passes_the_upload_limit_the_client_and_waits_long_enough(services):
    settings = settings_from(services["web"]["environment"])
    (size,) = re.findall(r"client_max_body_size (\d+)m;", NGINX)
    assert int(size) * 1024 * 1024 == settings.max_upload_bytes
    (read,) = re.findall(r"proxy_read_timeout (\d+)s;", NGINX)
    assert int(read) > settings.request_timeout
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in NGINX
    nginx_address = services["nginx"]["networks"]["imgrec"]["ipv4_address"]
    assert settings.trusted_proxies == nginx_address
    (subnet,) = [c["subnet"] for c in yaml.safe_load(COMPOSE.read_text())["networks"]["imgrec"]["ipam"]["config"]]
    assert ipaddress.ip_address(nginx_address) in ipaddress.ip_network(subnet)


def test_probes_ask_the_app_what_it_answers(services):
    paths = {r.path for r in router.routes}
    probe = services["nginx"]["healthcheck"]["test"][-1]
    assert probe.endswith("/readyz") and "/readyz" in paths
    assert re.search(r"location = /readyz \{\s*proxy_pass http://imgrec_web;", NGINX)


def test_stops_leave_time_to_finish(services):
    settings = settings_from(services["autoscaler"]["environment"])

    def seconds(value: str) -> float:
        return float(value.rstrip("s"))

    assert seconds(services["web"]["stop_grace_period"]) >= settings.request_timeout
    assert seconds(services["autoscaler"]["stop_grace_period"]) >= settings.visibility_timeout + 5


def test_the_store_is_minio_with_its_own_keys(services):
    env = services["web"]["environment"]
    assert env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000" and env["IMGREC_STORE"].startswith("s3://")
    minio = services["minio"]["environment"]
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    assert Path(COMPOSE.parent / "nginx.conf").is_file()


def test_every_image_is_pinned(services):
    """A tag that names a release, never latest (MinIO's from quay.io: Docker Hub's
    minio/minio is gone)."""
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), (name, image)
    assert services["minio"]["image"].startswith("quay.io/minio/minio:RELEASE.")


def test_nginx_resolves_the_replicas_again_not_once():
    """A replica restarted (or added) gets a new address: nginx asks Docker's DNS again
    within seconds (`resolve`, from nginx 1.27.3), instead of keeping what it found at start."""
    (resolver,) = re.findall(r"^resolver (.+);", NGINX, re.MULTILINE)
    address, *options = resolver.split()
    assert address == "127.0.0.11", "Docker's embedded DNS"
    valid = dict(o.split("=", 1) for o in options)["valid"]
    assert valid.endswith("s") and int(valid[:-1]) <= 10
    upstream = re.search(r"upstream imgrec_web \{(.*?)\}", NGINX, re.DOTALL).group(1)
    assert re.search(r"^\s*zone imgrec_web \d+k;", upstream, re.MULTILINE)
    (server,) = re.findall(r"^\s*server (.+);", upstream, re.MULTILINE)
    assert server.split()[:2] == ["web:8000", "resolve"]


def test_nginx_is_a_release_that_resolves_upstreams(services):
    version = tuple(int(n) for n in services["nginx"]["image"].split(":")[1].split("-")[0].split("."))
    assert version >= (1, 27, 3) or (len(version) == 2 and version >= (1, 28))


def test_the_file_says_it_needs_compose_v2():
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    assert "Needs Compose v2" in header and "docker compose" in header
