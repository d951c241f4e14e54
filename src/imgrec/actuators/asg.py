"""`AsgActuator`: workers on EC2 instances of an Auto Scaling group.

URL ``asg://group-name``. Each instance runs `imgrec worker` at boot (user data or
a systemd unit, see the README); the actuator only sets the group's desired
capacity. Scale-in is EC2's: an instance being terminated gets SIGTERM, and the
worker finishes or releases its batch, as it does on one machine.
"""

from __future__ import annotations

import logging
from urllib.parse import urlparse

from imgrec.actuators.base import Actuator
from imgrec.errors import BackendError, ConfigError, aws_error, require, translating

log = logging.getLogger("imgrec.autoscaler")
_LIVE = {"Pending", "Pending:Wait", "Pending:Proceed", "InService"}
_guard = translating(lambda exc: aws_error(exc, "EC2 Auto Scaling"))


class AsgActuator(Actuator):
    def __init__(self, url: str, client=None) -> None:
        boto3 = require("boto3", "aws", "the EC2 Auto Scaling actuator")
        self.group = urlparse(url).netloc
        if not self.group:
            raise ConfigError(f"no group in actuator URL {url!r}; e.g. asg://imgrec-workers")
        self._asg = client or boto3.client("autoscaling")

    def _describe(self) -> dict:
        groups = self._asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])["AutoScalingGroups"]
        if not groups:
            raise BackendError(f"no Auto Scaling group named {self.group}")
        return groups[0]

    @_guard
    def running(self) -> int:
        return sum(i["LifecycleState"] in _LIVE for i in self._describe()["Instances"])

    @_guard
    def reconcile(self, desired: int) -> None:
        group = self._describe()
        # The group's own bounds win: the autoscaler asks within them.
        capacity = max(group["MinSize"], min(group["MaxSize"], desired))
        if group["DesiredCapacity"] != capacity:
            log.info("group %s: desired capacity %d -> %d", self.group, group["DesiredCapacity"], capacity)
            self._asg.set_desired_capacity(AutoScalingGroupName=self.group, DesiredCapacity=capacity, HonorCooldown=False)

    def shutdown(self, timeout: float) -> None:
        """Nothing to stop here: the instances belong to the group, and keep serving (or
        scale in by their own idle timeout) while the autoscaler restarts."""
