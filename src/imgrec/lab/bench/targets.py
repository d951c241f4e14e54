"""The performance targets of `imgrec bench e2e`, each a pass/fail row computed from one
run's report: ratios against the bare pipeline measured in the same run."""

from __future__ import annotations

from imgrec.engine.variants import VARIANTS
from imgrec.settings import Settings

FP32_RATIO, INT8_RATIO = 0.9, 1.3  # service images/s over the plain bare fp32 pipeline's
TOP1_POINTS = 1.5  # the most top-1 an int8 variant may lose to its fp32 model
CPU_BUSY = 0.95
IDLE_OVERHEAD_MS = 5.0
COLD_START_S = 1.0


def _row(target: str, measured: str, passed: bool | None) -> dict:
    return {"target": target, "measured": measured, "passed": passed}


def accuracy_gap(settings: Settings) -> tuple[float, str] | None:
    """Top-1 points the int8 variant loses to its fp32 model, from their manifests (both
    measured on the same images with `imgrec model build --eval DIR`), or None."""
    from imgrec.engine.model import load_manifest
    from imgrec.errors import ModelMissing

    try:
        int8 = load_manifest(settings.model_path).accuracy
        fp32 = load_manifest(settings.with_overrides(model=VARIANTS[settings.model].fp32).model_path).accuracy
    except ModelMissing:
        return None
    if not int8 or not fp32 or (int8["on"], int8["images"]) != (fp32["on"], fp32["images"]):
        return None
    return 100 * (fp32["top1"] - int8["top1"]), f"{fp32['top1']:.1%} -> {int8['top1']:.1%} on {int8['images']} {int8['on']}"


def targets(report: dict, settings: Settings) -> list[dict]:
    ratio = report["ratio_to_bare"]
    rows = []
    if VARIANTS[settings.model].int8:
        rows.append(_row(f"{settings.model} service >= {INT8_RATIO}x plain bare fp32", f"{ratio:.2f}x", ratio >= INT8_RATIO))
        gap = accuracy_gap(settings)
        if gap is None:
            rows.append(
                _row(
                    f"top-1 within {TOP1_POINTS} points of fp32",
                    "not measured: imgrec model build --eval DIR, for both variants",
                    None,
                )
            )
        else:
            rows.append(
                _row(f"top-1 within {TOP1_POINTS} points of fp32", f"{gap[0]:+.1f} points lost ({gap[1]})", gap[0] <= TOP1_POINTS)
            )
    else:
        rows.append(_row(f"{settings.model} service >= {FP32_RATIO}x plain bare fp32", f"{ratio:.2f}x", ratio >= FP32_RATIO))
    busy = report["cpu"]["cpu_busy"]
    rows.append(_row(f"CPU busy >= {CPU_BUSY:.0%} during the service rounds", f"{busy:.1%}", busy >= CPU_BUSY))
    over = report["idle_p50_overhead_ms"]
    rows.append(
        _row(f"idle single-request p50 <= bare + {IDLE_OVERHEAD_MS:g} ms", f"bare + {over:.1f} ms", over <= IDLE_OVERHEAD_MS)
    )
    cold = report["cold_start_seconds"]
    rows.append(_row(f"cold start <= {COLD_START_S:g} s", f"{cold:.2f} s", cold <= COLD_START_S))
    return rows
