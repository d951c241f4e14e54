"""deploy/kubernetes, checked offline (no cluster runs here): each overlay rendered as
kustomize would; core objects against the Kubernetes schemas (kubernetes-validate,
strict), KEDA's against its CRDs kept in deploy/schemas; and every setting, command,
port, probe and grace period against imgrec itself."""

from __future__ import annotations

import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deployfiles import DEPLOY, KUBERNETES, OVERLAYS, check_command, containers, find, kustomize, settings_from
from imgrec.web.routes import router

K8S_VERSIONS = ("1.33.0", "1.37.0")  # the oldest still widely run (e.g. EKS) and the newest bundled
CRDS = {
    f"{d['spec']['names']['kind']}": d
    for name in ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml")
    for d in [yaml.safe_load((DEPLOY / "schemas" / name).read_text())]
}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, kustomize(KUBERNETES / "overlays" / request.param)


def config(objects: list[dict]) -> dict[str, str]:
    (cm,) = find(objects, "ConfigMap", "imgrec-config")
    return cm["data"]


def test_there_are_overlays_for_redis_sqs_and_no_keda():
    assert OVERLAYS == ["redis", "redis-hpa", "sqs"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_are_valid_kubernetes(rendered, version):
    core = [o for o in rendered[1] if not o["apiVersion"].startswith("keda.sh/")]
    for o in core:
        kubernetes_validate.validate(o, version, strict=True)
    (web,) = find(core, "Deployment", "imgrec-web")  # the check has teeth: a misspelt field is refused
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**web, "spec": {**web["spec"], "replica": 2}}, version, strict=True)


def strict(schema: dict) -> dict:
    """A CRD's schema as `kubectl apply --validate=strict` uses it: a field the schema does
    not name is an error (the API server would otherwise drop it without a word)."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema


def keda_schema(o: dict) -> dict:
    (served,) = [v for v in CRDS[o["kind"]]["spec"]["versions"] if f"keda.sh/{v['name']}" == o["apiVersion"]]
    schema = strict(served["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by the API server itself
    return schema


def test_keda_objects_are_valid_for_their_crds(rendered):
    keda = [o for o in rendered[1] if o["apiVersion"].startswith("keda.sh/")]
    for o in keda:
        jsonschema.Draft7Validator(keda_schema(o)).validate(o)
        assert o["metadata"]["namespace"] == "imgrec"
    if keda:  # the check has teeth: a misspelt field is refused
        bad = {**keda[0], "spec": {**keda[0]["spec"], "coolDownPeriod": 60}}
        with pytest.raises(jsonschema.ValidationError, match="coolDownPeriod"):
            jsonschema.Draft7Validator(keda_schema(bad)).validate(bad)


def test_the_configuration_is_imgrec_settings(rendered):
    data = config(rendered[1])
    settings = settings_from(data)  # every IMGREC_ variable exists, each value valid
    assert settings.queue_url.split(":")[0] in ("redis", "sqs") and settings.store_url.startswith("s3://")
    assert settings.worker_idle_timeout == float("inf"), "workers never stop by themselves: KEDA or the HPA decides"
    for workload, c in containers(rendered[1]):
        if c["image"].rsplit("/", 1)[-1].split(":")[0] == "imgrec":  # whatever registry it is pushed to
            check_command(c["args"])
            assert c["envFrom"] == [
                {"configMapRef": {"name": "imgrec-config"}},
                {"secretRef": {"name": "imgrec-secrets", "optional": True}},
            ]
            assert workload["spec"]["template"]["spec"]["securityContext"]["runAsUser"] != 0


def test_the_web_tier_ports_probes_scaling_and_disruptions(rendered):
    objects = rendered[1]
    settings = settings_from(config(objects))
    (web,) = find(objects, "Deployment", "imgrec-web")
    (c,) = web["spec"]["template"]["spec"]["containers"]
    assert c["ports"] == [{"name": "http", "containerPort": settings.port}]
    paths = {r.path for r in router.routes}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"} and "/readyz" in paths
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"} and "/healthz" in paths
    assert web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > settings.request_timeout
    (service,) = find(objects, "Service", "imgrec-web")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]
    (pdb,) = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == web["spec"]["selector"]["matchLabels"]
    (hpa,) = [h for h in find(objects, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "imgrec-web"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu" and hpa["spec"]["minReplicas"] >= 2


def test_workers_drain_on_sigterm_and_are_ready_after_a_warm_up(rendered):
    objects = rendered[1]
    settings = settings_from(config(objects))
    (worker,) = find(objects, "Deployment", "imgrec-worker")
    pod = worker["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    longest_batch = settings.max_batch * settings.image_timeout  # past which a batch is cut short
    assert pod["terminationGracePeriodSeconds"] >= longest_batch + 10
    ready_file = c["args"][c["args"].index("--ready-file") + 1]
    assert c["readinessProbe"]["exec"]["command"] == ["test", "-f", ready_file]
    assert any(ready_file.startswith(m["mountPath"] + "/") for m in c["volumeMounts"]), "a writable place"


def test_a_hung_worker_is_restarted_by_its_liveness_probe(rendered):
    """What `imgrec up`'s autoscaler does for its workers, the kubelet does here: the
    worker touches IMGREC_LIVE_FILE each time its loop goes round, and `imgrec health
    worker` fails once that is older than Settings.hung_after (the autoscaler's limit)."""
    objects = rendered[1]
    (worker,) = find(objects, "Deployment", "imgrec-worker")
    (c,) = worker["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    settings = settings_from({**config(objects), **env})  # what the worker and its probe read
    assert settings.live_file and any(settings.live_file.startswith(m["mountPath"] + "/") for m in c["volumeMounts"])
    probe = c["livenessProbe"]
    command = probe["exec"]["command"]
    assert command[0] == "imgrec" and check_command(command[1:]) == "health" and command[2:] == ["worker"]
    assert probe["timeoutSeconds"] >= 5, "a Python process starting on a busy node"
    # Restarted within a few minutes of the limit, and never for a slow probe alone.
    assert probe["periodSeconds"] * probe["failureThreshold"] <= settings.hung_after / 2
    assert probe["failureThreshold"] >= 2
    assert "IMGREC_LIVE_FILE" not in config(objects), "the workers' own setting, not every pod's"


def test_prometheus_scrapes_the_web_pods(rendered):
    objects = rendered[1]
    settings = settings_from(config(objects))
    (web,) = find(objects, "Deployment", "imgrec-web")
    annotations = web["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(settings.port),
                           "prometheus.io/path": "/metrics"}
    assert "/metrics" in {r.path for r in router.routes}


def test_exactly_one_housekeeping_autoscaler_starting_no_worker(rendered):
    autoscalers = [(w, c) for w, c in containers(rendered[1]) if c["args"][0] == "autoscaler"]
    assert len(autoscalers) == 1
    workload, c = autoscalers[0]
    assert c["args"] == ["autoscaler", "--max-workers", "0"]
    assert workload["spec"]["replicas"] == 1 and workload["spec"]["strategy"] == {"type": "Recreate"}


def test_workers_scaled_by_keda_or_an_hpa_never_both(rendered):
    name, objects = rendered
    by_keda = {o["spec"]["scaleTargetRef"]["name"] for o in find(objects, "ScaledObject")}
    by_hpa = {o["spec"]["scaleTargetRef"]["name"] for o in find(objects, "HorizontalPodAutoscaler")}
    assert not by_keda & by_hpa
    assert "imgrec-worker" in (by_hpa if name.endswith("-hpa") else by_keda)
    assert "imgrec-web" in by_hpa


def test_redis_keeps_its_data_where_it_is_the_queue(rendered):
    redis = [c for _, c in containers(rendered[1]) if c["image"].startswith("redis:")]
    if settings_from(config(rendered[1])).queue_url.startswith("redis://"):
        (c,) = redis
        assert c["args"][c["args"].index("--appendonly") + 1] == "yes"
    else:
        assert redis == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) is not on this machine")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_renderer_here_agrees_with_kustomize(overlay):
    """This module's renderer against the real one, where kubectl is installed (its
    generated names carry a hash suffix, which this one leaves out)."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / "overlays" / overlay)], capture_output=True, text=True, check=True, timeout=60
    )
    real = [o for o in yaml.safe_load_all(out.stdout) if o]
    ours = kustomize(KUBERNETES / "overlays" / overlay)
    (cm,) = find(real, "ConfigMap")
    assert cm["metadata"]["name"].startswith("imgrec-config-") and cm["data"] == config(ours)
    for o in real:  # the same objects but for the generated name (and its references)
        if o["kind"] != "ConfigMap":
            (same,) = find(ours, o["kind"], o["metadata"]["name"])
            assert yaml.safe_dump(same).replace("imgrec-config\n", "") == yaml.safe_dump(o).replace(
                cm["metadata"]["name"] + "\n", ""
            ), o["metadata"]["name"]
    assert len(real) == len(ours)
