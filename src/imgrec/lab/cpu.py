"""Where the CPU goes: the machine's busy share and each service process's CPU seconds,
read from /proc (Linux) before and after a measured stretch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
ROLES = ("web", "worker", "autoscaler", "up")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of every core since boot (iowait counts as idle)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, None if it is gone."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK


def _role(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
    except OSError:
        return "other"
    for word in words[:3]:  # the title setproctitle gives: "imgrec worker", or the argv
        if word in ROLES:
            return word
    return "other"


def tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (role, CPU seconds) for `root` and every descendant alive now."""
    parents: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := _stat(int(entry))) is not None:
            parents[int(entry)] = s
    members, grew = {root}, True
    while grew:
        more = {pid for pid, (ppid, _) in parents.items() if ppid in members} - members
        members |= more
        grew = bool(more)
    return {pid: (_role(pid), parents[pid][1]) for pid in members if pid in parents}


@dataclass
class CpuSample:
    machine: tuple[int, int]
    processes: dict[int, tuple[str, float]]

    @classmethod
    def take(cls, root: int) -> CpuSample:
        return cls(machine_ticks(), tree_cpu(root))


def account(before: CpuSample, after: CpuSample, images: int) -> dict:
    """The machine's busy share between the samples, and CPU milliseconds per image by
    role (a process that started between them counts from zero)."""
    busy = (after.machine[0] - before.machine[0]) / max(1, after.machine[1] - before.machine[1])
    per_role: dict[str, float] = {}
    for pid, (role, seconds) in after.processes.items():
        start = before.processes.get(pid, (role, 0.0))[1]
        per_role[role] = per_role.get(role, 0.0) + seconds - start
    ms = {role: round(1000 * s / max(1, images), 3) for role, s in sorted(per_role.items())}
    return {"cpu_busy": round(busy, 4), "cpu_ms_per_image": ms, "cpu_ms_per_image_total": round(sum(ms.values()), 3)}
