"""Every adapter of each port, for the contract suites: name -> URL factory.

Each factory takes pytest's `request` (to start the server it needs, once per
session) and returns a URL unique to the test, so tests never share a queue or bucket.
The fixtures `queue_url`, `store_url` and `actuator_and_loss` run a test once per adapter.
An adapter that needs a server (redis-server, moto_server) or imgrec's own processes is
marked `server`: `make test-fast` leaves those to `make test`.
"""

from __future__ import annotations

import uuid

import pytest


def _memory(request) -> str:
    return f"memory://t{uuid.uuid4().hex[:12]}"


def _sqlite(request) -> str:
    return f"sqlite://{request.getfixturevalue('tmp_path')}/queue.sqlite3"


def _redis(request) -> str:
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=t{uuid.uuid4().hex[:12]}"


def _sqs(request) -> str:
    request.getfixturevalue("moto_server")
    return f"sqs://t{uuid.uuid4().hex[:12]}"


def _sqs_fifo(request) -> str:
    return _sqs(request) + "?fifo=1"


def _local(request) -> str:
    return (request.getfixturevalue("tmp_path") / "store").as_uri()


def _s3(request) -> str:
    request.getfixturevalue("moto_server")
    from imgrec.stores.s3 import S3Store

    url = f"s3://b{uuid.uuid4().hex[:12]}/prefix"
    S3Store(url).create()
    return url


QUEUES = {"memory": _memory, "sqlite": _sqlite, "redis": _redis, "sqs": _sqs, "sqs-fifo": _sqs_fifo}
STORES = {"memory": _memory, "local": _local, "s3": _s3}


IN_PROCESS = {"memory", "sqlite", "local"}  # adapters whose tests start no server


def adapters(names) -> list:
    """Fixture params, those that need a server (or processes of their own) marked `server`."""
    return [n if n in IN_PROCESS else pytest.param(n, marks=pytest.mark.server) for n in sorted(names)]


@pytest.fixture(params=adapters(QUEUES))
def queue_url(request) -> str:
    return QUEUES[request.param](request)


@pytest.fixture(params=adapters(STORES))
def store_url(request) -> str:
    return STORES[request.param](request)


# --- actuators: (actuator, lose_one) where lose_one makes one worker disappear -------


def _local_actuator(request):
    import os
    import signal

    from imgrec.actuators.local import LocalActuator

    tmp = request.getfixturevalue("tmp_path")
    model_dir = request.getfixturevalue("model_dir")
    env = {**os.environ, "IMGREC_DATA_DIR": str(tmp), "IMGREC_MODEL_DIR": str(model_dir)}
    actuator = LocalActuator(env={**env, "IMGREC_WORKER_IDLE_TIMEOUT": "120"}, capacity=4)
    request.addfinalizer(lambda: actuator.shutdown(timeout=30))
    return actuator, lambda: os.kill(actuator.pids()[0], signal.SIGKILL)


def _asg_actuator(request):
    request.getfixturevalue("moto_server")
    import boto3

    from imgrec.actuators.asg import AsgActuator

    group = f"g{uuid.uuid4().hex[:10]}"
    ec2, asg = boto3.client("ec2"), boto3.client("autoscaling")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    asg.create_launch_configuration(LaunchConfigurationName=group, ImageId=image, InstanceType="t3.micro")
    asg.create_auto_scaling_group(
        AutoScalingGroupName=group, LaunchConfigurationName=group, MinSize=0, MaxSize=8, DesiredCapacity=0,
        AvailabilityZones=["us-east-1a"],
    )

    def lose_one():
        (first, *_) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]
        asg.terminate_instance_in_auto_scaling_group(InstanceId=first["InstanceId"], ShouldDecrementDesiredCapacity=False)

    return AsgActuator(f"asg://{group}"), lose_one


ACTUATORS = {"local": _local_actuator, "asg": _asg_actuator}


@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.server) for n in sorted(ACTUATORS)])
def actuator_and_loss(request):
    return ACTUATORS[request.param](request)


# --- outages: (url, break_it, heal_it) for each adapter that has a backend to lose -----


def _disk_outage(request, url_for):
    from servers import SmallDisk

    disk = SmallDisk(request.getfixturevalue("tmp_path") / "disk")
    request.addfinalizer(disk.unmount)
    return url_for(disk.path), disk.fill, disk.free


def _redis_outage(request):
    from servers import RedisServer

    server = RedisServer(request.getfixturevalue("tmp_path") / "redis")
    holder = {"server": server}
    request.addfinalizer(lambda: holder["server"].stop())

    def heal():
        holder["server"] = RedisServer(request.getfixturevalue("tmp_path") / "redis", port=server.port)

    return f"{server.url}?prefix=outage", server.stop, heal


def _moto_outage(request, url: str):
    """Its own moto server (the session's one serves other tests), stopped for good."""
    from servers import MotoServer

    server = MotoServer()
    request.addfinalizer(server.stop)
    monkeypatch = request.getfixturevalue("monkeypatch")
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    return url, server.stop, None


OUTAGE_QUEUES = {
    "sqlite": lambda r: _disk_outage(r, lambda p: f"sqlite://{p}/queue.sqlite3"),
    "redis": _redis_outage,
    "sqs": lambda r: _moto_outage(r, f"sqs://o{uuid.uuid4().hex[:12]}"),
    "sqs-fifo": lambda r: _moto_outage(r, f"sqs://o{uuid.uuid4().hex[:12]}?fifo=1"),
}
OUTAGE_STORES = {
    "local": lambda r: _disk_outage(r, lambda p: (p / "store").as_uri()),
    "s3": lambda r: _moto_outage(r, f"s3://o{uuid.uuid4().hex[:12]}/prefix"),
}


@pytest.fixture(params=adapters(OUTAGE_QUEUES))
def queue_outage(request):
    """(url, break_it, heal_it): heal_it is None where the backend's state is lost for good."""
    return OUTAGE_QUEUES[request.param](request)


@pytest.fixture(params=adapters(OUTAGE_STORES))
def store_outage(request):
    return OUTAGE_STORES[request.param](request)
