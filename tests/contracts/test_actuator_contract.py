"""The actuator port's contract, run against every adapter (local processes, EC2 Auto Scaling)."""

from __future__ import annotations

from imgrec.lab.harness import wait_until


def _converges(actuator, desired: int) -> None:
    def there() -> bool:
        actuator.reconcile(desired)
        return actuator.running() == desired

    wait_until(there, 60, 0.25, f"{desired} workers")


def test_scales_out_and_in(actuator_and_loss):
    actuator, _ = actuator_and_loss
    assert actuator.running() == 0
    _converges(actuator, 2)
    _converges(actuator, 3)
    _converges(actuator, 1)
    _converges(actuator, 0)


def test_a_lost_worker_is_replaced(actuator_and_loss):
    actuator, lose_one = actuator_and_loss
    _converges(actuator, 2)
    lose_one()
    _converges(actuator, 2)


def test_reconcile_is_idempotent(actuator_and_loss):
    actuator, _ = actuator_and_loss
    _converges(actuator, 2)
    for _ in range(5):
        actuator.reconcile(2)
    assert actuator.running() == 2
