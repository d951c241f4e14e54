"""Every adapter of each port, for the contract suites: name -> URL factory.

Each factory takes pytest's `request` (to start the server it needs, once per
session) and returns a URL unique to the test, so tests never share a queue or bucket.
"""

from __future__ import annotations

import uuid

import pytest


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


QUEUES = {"sqlite": _sqlite, "redis": _redis, "sqs": _sqs, "sqs-fifo": _sqs_fifo}
STORES = {"local": _local, "s3": _s3}


@pytest.fixture(params=sorted(QUEUES))
def queue_url(request) -> str:
    return QUEUES[request.param](request)


@pytest.fixture(params=sorted(STORES))
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
    actuator = LocalActuator(["--idle-timeout", "120"], env=env)
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


@pytest.fixture(params=sorted(ACTUATORS))
def actuator_and_loss(request):
    return ACTUATORS[request.param](request)
