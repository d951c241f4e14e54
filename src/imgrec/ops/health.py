"""`imgrec health`: whether this host's (or container's) imgrec process of a role does
its work, for a container's HEALTHCHECK and a Kubernetes probe. One line says why.

- web: `GET /readyz` on IMGREC_PORT answers 200 (the queue answers, the store takes a
  write, the reply listener listens);
- worker: its loop went round within `Settings.hung_after` (the age of IMGREC_LIVE_FILE,
  which the loop touches at every round; none yet: still loading its model);
- autoscaler: its heartbeat in the store is fresh (written within three beats);
- anything else (init, status, ...): nothing to check.

Without a role, the role is the command of the container's main process (the first
process running `imgrec <command>`), so one HEALTHCHECK in the image fits every role.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from imgrec.errors import BackendError, BadInput, NotFound
from imgrec.messages import Heartbeat, heartbeat_key
from imgrec.presence import BEAT_SECONDS, STALE_BEATS
from imgrec.settings import Settings

ROLES = ("web", "worker", "autoscaler")


def role_of(argv: list[str]) -> str:
    """The command of an `imgrec` command line (`.../python .../imgrec worker`, `python -m
    imgrec worker`, `docker-init -- imgrec web`, or the title a process gave itself, one
    "imgrec worker"), or "" if it runs no imgrec command."""
    words = [w for a in argv for w in (a.split() if a.startswith("imgrec ") else [a])]
    for i, word in enumerate(words):
        if Path(word).name == "imgrec":
            rest = [w for w in words[i + 1 :] if not w.startswith("-")]
            return rest[0] if rest else ""
    return ""


def imgrec_processes(proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, command) of every process here running an imgrec command, oldest pid first."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile
            continue
        role = role_of([a for a in argv if a])
        if role and role != "health":  # another check, running beside this one
            found.append((int(entry.name), role))
    return sorted(found)


def check(settings: Settings, role: str = "", proc: Path = Path("/proc")) -> tuple[bool, str]:
    """(healthy, why) for `role`, or for the role of this container's main process."""
    processes = imgrec_processes(proc) if not role or role == "autoscaler" else []
    if not role:
        if not processes:
            return False, "no imgrec process runs here"
        role = processes[0][1]
    if role == "web":
        return _web(settings)
    if role == "worker":
        return _worker(settings)
    if role == "autoscaler":
        return _autoscaler(settings, [pid for pid, r in processes if r == "autoscaler"])
    return True, f"nothing to check for `imgrec {role}`"


def _web(settings: Settings) -> tuple[bool, str]:
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return True, f"{url}: {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code} {exc.read().decode(errors='replace')[:200]}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def _worker(settings: Settings) -> tuple[bool, str]:
    if not settings.live_file:
        return False, "IMGREC_LIVE_FILE is not set: nothing tells whether the worker's loop turns"
    try:
        age = time.time() - os.stat(settings.live_file).st_mtime
    except FileNotFoundError:
        return True, f"no {settings.live_file} yet: the worker has not started its loop (it loads or waits for its model)"
    if age > settings.hung_after:
        return False, f"the worker's loop last went round {age:.0f}s ago (hung past {settings.hung_after:.0f}s)"
    return True, f"the worker's loop went round {age:.1f}s ago"


def _autoscaler(settings: Settings, pids: list[int]) -> tuple[bool, str]:
    from imgrec.stores import open_store

    if not pids:
        return False, "no imgrec autoscaler runs here"
    fresh_within = STALE_BEATS * BEAT_SECONDS["autoscaler"]
    store = open_store(settings.store_url, settings.backend_timeout)
    said = []
    for pid in pids:  # under an init (docker run --init) both it and its child name the command
        member = f"{socket.gethostname()}-{pid}"
        try:
            beat = Heartbeat.from_dict(store.get(heartbeat_key("autoscaler", member)), "autoscaler")
        except NotFound:
            said.append(f"no heartbeat of autoscaler {member} in the store")
            continue
        except (BackendError, BadInput) as exc:
            said.append(f"the heartbeat of autoscaler {member} cannot be read ({exc})")
            continue
        age = time.time() - beat.last_seen  # written from this host's clock: no other clock involved
        if beat.state == "running" and age < fresh_within:
            return True, f"autoscaler {member}: heartbeat {age:.1f}s old"
        said.append(f"autoscaler {member}: heartbeat {beat.state}, {age:.0f}s old (fresh within {fresh_within:.0f}s)")
    return False, "; ".join(said)
