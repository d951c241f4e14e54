"""KEDA (and the plain HPA) scale the workers by imgrec's own policy: the same metric
(waiting + in flight), the same names, the same numbers, and the same number of
workers on a table of (backlog, in flight) cases."""

from __future__ import annotations

import math
from urllib.parse import parse_qs, urlparse

import pytest

from deployfiles import KUBERNETES, find, kustomize
from imgrec.autoscaler.policy import STEP_SECONDS, PolicyState, ScalingConfig, Snapshot, decide, target
from imgrec.lab.scaling.peers import KedaConfig, KedaState, keda_decide
from imgrec.messages import REQUEST_QUEUE
from imgrec.queues import open_queue
from imgrec.queues.redis import GROUP
from imgrec.settings import Settings

CASES = [
    (0, 0),
    (1, 0),
    (0, 1),
    (3, 0),
    (4, 0),
    (5, 0),
    (0, 5),
    (3, 2),
    (2, 7),
    (16, 16),
    (40, 0),
    (79, 0),
    (80, 0),
    (81, 0),
    (0, 200),
    (1000, 50),
]


def overlay(name: str) -> tuple[dict, dict, dict]:
    """(the scaler's spec: a ScaledObject's or an HPA's, its trigger or metric, imgrec-config)."""
    objects = kustomize(KUBERNETES / "overlays" / name)
    (config,) = find(objects, "ConfigMap", "imgrec-config")
    scaled = find(objects, "ScaledObject", "imgrec-worker")
    if scaled:
        (trigger,) = scaled[0]["spec"]["triggers"]
        return scaled[0]["spec"], trigger, config["data"]
    (hpa,) = find(objects, "HorizontalPodAutoscaler", "imgrec-worker")
    (metric,) = hpa["spec"]["metrics"]
    return hpa["spec"], metric, config["data"]


def keda_numbers(spec: dict, trigger: dict) -> tuple[int, int, int, int]:
    """(min, max, target, activation) as KEDA reads them."""
    meta = trigger["metadata"]
    if trigger["type"] == "redis-streams":
        return spec["minReplicaCount"], spec["maxReplicaCount"], int(meta["streamLength"]), int(meta["activationLagCount"])
    return spec["minReplicaCount"], spec["maxReplicaCount"], int(meta["queueLength"]), int(meta["activationQueueLength"])


def keda_replicas(metric: int, low: int, high: int, per: int, activation: int) -> int:
    """KEDA at rest: 0 while the metric is at or under the activation threshold (and the
    minimum is 0); above it, its HPA's ceil(metric / target), within the bounds."""
    if metric <= activation and low == 0:
        return 0
    return max(max(1, low), min(high, math.ceil(metric / per)))


def imgrec_config(low: int, high: int) -> ScalingConfig:
    s = Settings()
    return ScalingConfig(low, high, s.target_per_worker, s.scale_in_delay, s.scale_to_zero_delay, s.scale_in_step,
                         s.blind_scale_to_zero_delay)


@pytest.mark.parametrize("name", ["redis", "sqs"])
def test_keda_counts_the_queue_imgrec_uses(name):
    _, trigger, config = overlay(name)
    queue = urlparse(config["IMGREC_QUEUE"])
    meta = trigger["metadata"]
    if name == "redis":
        prefix = parse_qs(queue.query).get("prefix", ["imgrec"])[0]
        assert trigger["type"] == "redis-streams" and meta["stream"] == f"{prefix}:{REQUEST_QUEUE}"
        # No consumer group: KEDA reads the stream's length (XLEN), waiting + in flight
        # (see the test against a real Redis below); with the group it would read one or the other.
        assert "consumerGroup" not in meta and "lagCount" not in meta and GROUP == "imgrec"
        host, port = meta["address"].rsplit(":", 1)
        assert host == f"{queue.hostname}.imgrec.svc.cluster.local" and int(port) == queue.port
    else:
        fifo = parse_qs(queue.query).get("fifo", ["0"])[0] in ("1", "true")
        assert trigger["type"] == "aws-sqs-queue" and meta["scaleOnInFlight"] == "true"
        assert meta["queueURL"].rsplit("/", 1)[1] == f"{queue.netloc}-{REQUEST_QUEUE}" + (".fifo" if fifo else "")
        assert meta["awsRegion"] == config["AWS_REGION"]


@pytest.mark.parametrize("name", ["redis", "sqs", "redis-hpa"])
def test_the_numbers_are_imgrec_defaults(name):
    s = Settings()
    spec, trigger, _ = overlay(name)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] if "advanced" in spec else spec["behavior"]
    down, up = behavior["scaleDown"], behavior["scaleUp"]
    assert down["stabilizationWindowSeconds"] == s.scale_in_delay  # in to the highest target of the delay
    step = int(STEP_SECONDS)
    assert down["selectPolicy"] == "Max" and down["policies"] == [
        {"type": "Percent", "value": round(s.scale_in_step * 100), "periodSeconds": step},
        {"type": "Pods", "value": 1, "periodSeconds": step},  # and at least one fewer
    ]
    if "minReplicaCount" in spec:  # KEDA
        low, high, per, activation = keda_numbers(spec, trigger)
        # KEDA sees the queue's length every few seconds, not every request: the blind delay.
        cooldown = s.blind_scale_to_zero_delay
        assert (low, per, activation, spec["cooldownPeriod"]) == (s.min_workers, s.target_per_worker, 0, cooldown)
    else:  # the HPA: it cannot go below one
        high, per = spec["maxReplicas"], int(trigger["external"]["target"]["averageValue"])
        assert spec["minReplicas"] == 1 and per == s.target_per_worker
        assert trigger["external"]["target"]["type"] == "AverageValue"
    assert up == {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": high, "periodSeconds": 1}]}


@pytest.mark.parametrize("name", ["redis", "sqs"])
def test_keda_and_imgrec_want_the_same_workers(name):
    spec, trigger, _ = overlay(name)
    low, high, per, activation = keda_numbers(spec, trigger)
    config = imgrec_config(low, high)
    for backlog, in_flight in CASES:
        ours = target(Snapshot(0.0, backlog, in_flight), config)
        assert keda_replicas(backlog + in_flight, low, high, per, activation) == ours, (backlog, in_flight)
    # Why not the consumer group's lag (the scaler's other zero-capable mode): it leaves
    # out the in-flight work, so a busy worker would be stopped under its batch.
    assert [c for c in CASES if keda_replicas(c[0], low, high, per, activation) != target(Snapshot(0, *c), config)]


@pytest.mark.parametrize("backlog, in_flight", CASES)
def test_keda_model_settles_where_imgrec_policy_does(backlog, in_flight):
    """The simulator's model of KEDA (polling, cooldown, its HPA's pace) with the
    ScaledObject's numbers, and imgrec's policy, under a steady load for five minutes."""
    spec, trigger, _ = overlay("redis")
    low, high, per, activation = keda_numbers(spec, trigger)
    keda = KedaConfig(
        high,
        polling_interval=spec["pollingInterval"],
        cooldown=spec["cooldownPeriod"],
        min_replicas=low,
        target=per,
        activation=activation,
    )
    config = imgrec_config(low, high)
    k, ours = KedaState(low), PolicyState(low)
    for t in range(0, 300):
        snapshot = Snapshot(float(t), backlog, in_flight)
        k, ours = keda_decide(snapshot, k, keda), decide(snapshot, ours, config)
    assert k.desired == ours.desired


def test_the_stream_length_keda_reads_is_waiting_plus_in_flight(redis_server):
    """Against a real Redis: imgrec deletes what it acks (and what it dead-letters or gives
    back), so XLEN of the request stream is always imgrec's backlog + in flight."""
    import redis

    queue = open_queue(f"{redis_server.url}?prefix=kedacheck", REQUEST_QUEUE, create=True, visibility_timeout=0.2, max_receives=2)
    client = redis.Redis.from_url(redis_server.url)

    def agree() -> None:
        stats = queue.stats()
        assert client.xlen(f"kedacheck:{REQUEST_QUEUE}") == stats.depth + stats.in_flight

    try:
        queue.send_many([{"n": i} for i in range(10)])
        agree()
        held = queue.receive(4)
        agree()
        queue.ack_many(held[:2])
        agree()
        queue.send_many([m.body for m in held[2:3]])  # given back: sent again, the old one acked
        queue.ack_many(held[2:3])
        agree()
        import time

        time.sleep(0.3)  # held[3] comes back after its visibility timeout, and later goes dead
        for _ in range(3):
            queue.receive(10)
            agree()
            time.sleep(0.3)
        assert queue.stats().dead > 0
        agree()
    finally:
        queue.delete()
        queue.close()
