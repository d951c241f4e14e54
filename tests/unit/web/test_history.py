"""The dashboard's samples: rates and per-image times from the counters' differences."""

from __future__ import annotations

from imgrec.web.history import StatusHistory


def _status(completed: int, workers: int, waited: float, decode: float) -> dict:
    return {"queue_depth": 3, "in_flight": 1, "workers": workers, "completed": completed,
            "stage_seconds": {"queue_wait": waited, "decode": decode, "inference": 2 * decode}}


def test_rates_times_and_scale_events():
    h = StatusHistory(lambda: {})
    h.sample(_status(0, 0, 0.0, 0.0), 100.0)
    h.sample(_status(20, 2, 4.0, 0.1), 102.0)  # 20 images in 2 s, 200 ms waiting each, 15 ms of work
    h.sample(_status(20, 2, 4.0, 0.1), 104.0)  # nothing done
    first, second, third = h.view()["samples"]
    assert first["images_per_second"] is None and second["images_per_second"] == 10.0
    assert round(second["queue_wait_ms"], 3) == 200.0 and round(second["work_ms"], 3) == 15.0
    assert third["images_per_second"] == 0.0 and third["queue_wait_ms"] is None
    assert h.view()["scale_events"] == [{"t": 102.0, "from": 0, "to": 2}]
