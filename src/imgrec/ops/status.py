"""`imgrec status`: the deployment at a glance, from the queue and the heartbeats in the
store, as rich tables or JSON. Reads only: it works from any host with the settings."""

from __future__ import annotations

import contextlib
import os
import socket
import time

from rich.console import Group
from rich.table import Table
from rich.text import Text

from imgrec import presence
from imgrec.engine.model import load_manifest
from imgrec.engine.registry import remote_manifest
from imgrec.errors import ImgrecError, QueueMissing
from imgrec.logs import redact
from imgrec.messages import HEARTBEATS, REQUEST_QUEUE, Heartbeat, request_queue_name
from imgrec.queues import open_queue
from imgrec.settings import Settings
from imgrec.stores import ObjectStore, open_store


def _member(b: Heartbeat, now: float) -> dict:
    state = b.state
    if state in ("running", "waiting") and not presence.is_alive(b, now, (state,)):
        state = "silent"  # died without a word (killed, crashed) or cut off
    return {
        "id": b.id,
        "role": b.role,
        "host": b.host,
        "pid": b.pid,
        "state": state,
        "last_seen": b.last_seen,
        "started": b.started,
        "completed": b.completed,
        "batches": sum(b.batch_sizes.values()),
        "model": b.model,
        "problem": b.problem,
        "counters": b.counters,
    }


def gather(settings: Settings) -> dict:
    """Everything `imgrec status` shows, as plain data (what `--json` prints)."""
    store = open_store(settings.store_url)
    queue = open_queue(settings.queue_url, REQUEST_QUEUE, visibility_timeout=settings.visibility_timeout)
    per_model = {settings.default_model: queue}
    for m in settings.served_models[1:]:  # the other models served side by side, each its own queue
        with contextlib.suppress(QueueMissing):
            per_model[m] = open_queue(settings.queue_url, request_queue_name(m, settings.default_model))
    now = time.time()
    view: dict = {
        "at": now,
        "store": redact(settings.store_url),
        "queue": redact(settings.queue_url),
        "retention_seconds": settings.retention,
    }
    clock = presence.StoreClock(store, f"status-{socket.gethostname()}-{os.getpid()}")  # one clock for every host
    beats: dict[str, list[Heartbeat]] = {}
    try:
        view["summary"] = presence.deployment_status(queue, store, clock, per_model=per_model)
        for role in HEARTBEATS:
            beats[role] = presence.read(store, role, clock)
            view[role] = [_member(b, now) for b in sorted(beats[role], key=lambda b: (b.host, b.started))]
    finally:
        for q in per_model.values():
            q.close()
        clock.forget()
    view["model"] = model_view(settings, store, beats["worker"])
    view["warnings"] = warnings(view["model"], beats["autoscaler"], now)
    return view


def model_view(settings: Settings, store: ObjectStore, workers: list[Heartbeat]) -> dict:
    """Where the model is, from what is true, not from the store alone: the store's (what a
    worker without one pulls), this host's model folder (IMGREC_MODEL_DIR), and what the
    live workers say they run (a model baked into an image is never in the store)."""
    settings = settings.for_model(settings.default_model)  # the default one, where several are served
    view: dict = {"variant": settings.model, "store": None, "here": None, "workers": presence.models(workers)}
    try:
        m = remote_manifest(store, settings.model)
        view["store"] = {"name": m.name, "sha256": m.sha256}
    except ImgrecError as exc:
        view["store_missing"] = str(exc)
    try:
        m = load_manifest(settings.model_path, variant=settings.model)
        view["here"] = {"path": str(settings.model_path), "name": m.name, "sha256": m.sha256}
    except (ImgrecError, OSError, ValueError, TypeError) as exc:  # none, another variant, or not a manifest
        view["here_missing"] = str(exc)
    run = [{"name": w["name"], "sha256": w["version"]} for w in view["workers"]]
    first = view["store"] or view["here"] or (run[0] if run else {"name": None, "sha256": None})
    view.update(name=first["name"], sha256=first["sha256"])
    return view


def warnings(model: dict, autoscalers: list[Heartbeat], now: float) -> list[str]:
    """What an operator should know that no member reports as its own problem: nothing
    doing the housekeeping, no model anywhere, workers on another model than the store's."""
    said = []
    if not any(presence.is_alive(b, now) for b in autoscalers):
        said.append(
            "no autoscaler runs: nothing starts workers for imgrec up's hosts or does the housekeeping (dead letters "
            "answered, lost jobs sent again, old data deleted); run imgrec up, or imgrec autoscaler (--max-workers 0 "
            "where something else runs the workers)"
        )
    if model["name"] is None:
        said.append(f"no model anywhere: none in the store ({model['store_missing']}), none on this host "
                    f"({model['here_missing']}), and no live worker runs one")
    elif model["store"] and any(not model["store"]["sha256"].startswith(w["version"]) for w in _same(model)):
        # (for the seconds of a rollout, too: the workers take the store's up between two batches)
        running = ", ".join(f"{w['name']}@{w['version']}" for w in _same(model))
        said.append(f"workers run {running} but the store has {model['store']['name']}@{model['store']['sha256'][:12]}: "
                    "a worker that pulls the model gets another one")
    return said


def _same(model: dict) -> list[dict]:
    """The live workers that run the store's model (others serve other models side by side)."""
    return [w for w in model["workers"] if w["name"] == model["store"]["name"]]


def _ago(then: float, now: float) -> str:
    if not then:
        return "-"
    s = max(0.0, now - then)
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.0f}h ago"


def _retention(seconds: float) -> str:
    if seconds <= 0:
        return "kept for ever"
    return f"{seconds / 86400:g}d" if seconds >= 86400 else f"{seconds / 3600:g}h"


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table | Text:
    if not rows:
        return Text(f"{title}: none", style="dim")
    table = Table(title=title, title_justify="left", expand=False)
    for c in columns:
        table.add_column(c, justify="right" if c in ("pid", "done", "batches") else "left")
    for r in rows:
        table.add_row(*r)
    return table


def render(view: dict) -> Group:
    now, s, model = view["at"], view["summary"], view["model"]
    head = Text.assemble(
        ("store ", "bold"),
        view["store"],
        ("  queue ", "bold"),
        view["queue"],
        ("  retention ", "bold"),
        _retention(view["retention_seconds"]),
        ("\nmodel ", "bold"),
        _model_line(model),
        ("\nqueue ", "bold"),
        f"{s['queue_depth']} waiting, {s['in_flight']} in flight, {s['dead_letter']} dead letters" if "queues" not in s
        else "; ".join(f"{m} {q['queue_depth']} waiting, {q['in_flight']} in flight, {q['dead_letter']} dead"
                       for m, q in s["queues"].items()),
        ("  workers ", "bold"),
        f"{s['workers']} running, {s['completed']} images done",
    )
    web = _table(
        "web replicas",
        ["id", "host", "pid", "state", "last seen"],
        [[m["id"], m["host"], str(m["pid"]), m["state"], _ago(m["last_seen"], now)] for m in view["web"]],
    )
    workers = _table(
        "workers",
        ["host", "pid", "state", "done", "batches", "model", "last seen"],
        [
            [
                m["host"] or m["id"],
                str(m["pid"] or ""),
                m["state"],
                str(m["completed"]),
                str(m["batches"]),
                m["model"],
                _ago(m["last_seen"], now),
            ]
            for m in view["worker"]
        ],
    )
    overseers = _table(
        "autoscalers and supervisors",
        ["role", "host", "pid", "state", "crashes", "hung", "restarts", "last seen"],
        [
            [
                m["role"],
                m["host"],
                str(m["pid"]),
                m["state"],
                str(m["counters"].get("worker_crashes", 0)),
                str(m["counters"].get("hung_workers_replaced", 0)),
                str(sum(v for k, v in m["counters"].items() if k.endswith("_restarts"))),
                _ago(m["last_seen"], now),
            ]
            for m in view["autoscaler"] + view["supervisor"]
        ],
    )
    problems = [Text(f"problem: {p}", style="bold red") for p in s["problems"]]
    said = [Text(f"warning: {w}", style="bold yellow") for w in view["warnings"]]
    return Group(head, web, workers, overseers, *problems, *said)


def _model_line(model: dict) -> str:
    if model["name"] is None:
        return "none (see the warning below)"
    where = []
    if model["store"]:
        where.append("in the store")
    if model["here"]:
        where.append(f"here in {model['here']['path']}")
    for w in model["workers"]:
        where.append(f"run by {w['workers']} worker{'s' if w['workers'] > 1 else ''} as {w['name']}@{w['version']} "
                     f"({w['variant'] or 'variant not said'})")
    if not model["store"]:
        where.append("none in the store: only a worker without one of its own needs it")
    return f"{model['name']} sha256 {model['sha256']} ({'; '.join(where)})"
