"""The benchmarks' results as tables: for a terminal (rich), and in Markdown for the
documentation site, whose performance page renders the recorded runs (docs/*.json)
with these functions (tools/docs_hooks.py)."""

from __future__ import annotations

from rich.table import Table

from imgrec.lab.bench.engine import StageTimes


def _table(title: str, columns: list[str], rows: list[list[str]], first_left: bool = False) -> Table:
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if first_left and i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _markdown(columns: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(columns), line(["---"] * len(columns)), *(line(row) for row in rows)])


def engine_table(rows: list[StageTimes]) -> Table:
    return _table(
        "engine vs plain onnxruntime + Pillow loop (ms per image, best of rounds)",
        ["batch", "decode", "stack", "infer", "engine", "img/s", "plain", "img/s", "ratio"],
        [
            [str(r.batch_size), f"{r.decode_ms:.2f}", f"{r.normalize_ms:.2f}", f"{r.inference_ms:.2f}",
             f"{r.engine_ms:.2f}", f"{1000 / r.engine_ms:.1f}", f"{r.plain_ms:.2f}", f"{1000 / r.plain_ms:.1f}",
             f"{r.ratio:.2f}x"]
            for r in rows
        ],
    )


def parallelism_table(layouts: dict[str, float]) -> Table:
    return _table(
        "parallelism on all cores (decode + inference, batch 8)", ["layout", "images/s"],
        [[layout, f"{ips:.1f}"] for layout, ips in layouts.items()], first_left=True,
    )


def e2e_tables(r: dict, requests: int, concurrency: int) -> list[Table]:
    main = r["main"]
    bare_rows = [
        [name, f"{b['images_per_second']:.1f}", "", "", "", f"{b['cpu_ms_per_image']:.2f}"] for name, b in r["bare"].items()
    ]
    summary = _table(
        f"imgrec end to end ({r['model']}), {concurrency} clients, {requests} requests (best of {r['rounds']} rounds)",
        ["", "images/s", "p50 ms", "p95 ms", "p99 ms", "CPU ms/image"],
        [
            [f"service {r['model']}", f"{main['images_per_second']:.1f}", f"{main['p50_ms']:.1f}",
             f"{main['p95_ms']:.1f}", f"{main['p99_ms']:.1f}", f"{r['cpu']['cpu_ms_per_image_total']:.2f}"],
            *bare_rows,
            ["ratio to plain bare", f"{r['ratio_to_bare']:.3f}x", "", "", "", ""],
        ],
        first_left=True,
    )
    cpu = _table(
        f"CPU during the service rounds: {r['cpu']['cpu_busy']:.1%} busy",
        ["process", "CPU ms per image"],
        [[role, f"{ms:.2f}"] for role, ms in r["cpu"]["cpu_ms_per_image"].items()],
        first_left=True,
    )
    stages = _table(
        "ms per image in each stage (the service's own timings)", ["stage", f"{concurrency} clients", "idle, 1 client"],
        _stage_rows(r), first_left=True,
    )
    verdict = {True: "pass", False: "FAIL", None: "-"}
    targets = _table(
        "targets",
        ["target", "measured", ""],
        [[t["target"], t["measured"], verdict[t["passed"]]] for t in r["targets"]],
        first_left=True,
    )
    return [summary, cpu, stages, targets]


def _stage_rows(r: dict) -> list[list[str]]:
    idle = r.get("idle_stages_ms_per_image", {})
    return [[stage, f"{ms:.2f}", f"{idle[stage]:.2f}" if stage in idle else "-"]
            for stage, ms in r["stages_ms_per_image"].items()]


def e2e_line(r: dict) -> str:
    return (
        f"idle single request p50: {r['idle_single_request']['p50_ms']:.1f} ms "
        f"(bare single image {r['bare_single_image_ms']:.1f} ms, overhead {r['idle_p50_overhead_ms']:.1f} ms); "
        f"cold start to first result: {r['cold_start_seconds']:.2f} s; "
        f"lost/5xx/wrong: {r['lost_or_5xx_or_wrong']}; client CPU share {r['main']['client_cpu_share']:.1%}"
    )


def simulation_table(results: dict, title: str) -> Table:
    """One row per policy of `imgrec simulate` (figures as `Result.figures` gives them)."""

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.0f}"

    rows = []
    for name, r in results.items():
        f = r.figures()
        rows.append([
            name, f"{f['worker_seconds']:.0f}", ms(f["p50_ms"]), ms(f["p95_ms"]), ms(f["p99_ms"]),
            f"{f['slo_attainment']:.1%}", str(f["cold_starts"]), str(f["scale_events"]), str(f["peak_workers"]),
            str(f["rejected"]),
        ])
    return _table(
        title, ["policy", "worker-s", "p50 ms", "p95 ms", "p99 ms", "in SLO", "starts", "events", "peak", "refused"],
        rows, first_left=True,
    )


REPLAY_COLUMNS = ["trace", "requests", "live worker-s", "sim worker-s", "diff", "live p99 ms (each run)", "sim p99 ms", "diff",
                  "agrees"]


def _replay_rows(report: dict) -> list[list[str]]:
    rows = []
    for name, s in report["shapes"].items():
        live, sim, diff = s["live"], s["simulated"], s["difference"]
        runs = [f"{r['p99_ms']:.0f}" for r in s.get("live_runs", [])]
        live_p99 = f"{live['p99_ms']:.0f}" + (f" ({', '.join(runs)})" if len(runs) > 1 else "")
        rows.append([
            name, str(live["requests"]), f"{live['worker_seconds']:.0f}", f"{sim['worker_seconds']:.0f}",
            f"{diff['worker_seconds']:.0%}", live_p99, f"{sim['p99_ms']:.0f}", f"{diff['p99_ms']:.0%}",
            "yes" if s["agrees"] else "no",
        ])
    return rows


def replay_table(report: dict, agreement: float) -> Table:
    m = report["model"]
    return _table(
        f"live imgrec up vs the simulator (batch of n: {m['service_a_ms']} + {m['service_b_ms']}n ms, "
        f"cold start {m['cold_start_s']} s, {m['overhead_ms']} ms a request outside the workers, "
        f"{m['host_cores']} cores shared with {m.get('side_cpu_ms', 0)} ms of CPU an image beside the workers; "
        f"engine {m['source']}); "
        f"{report.get('repeats', 1)} live run(s) of each trace, pooled; agreement within {agreement:.0%}",
        REPLAY_COLUMNS, _replay_rows(report), first_left=True,
    )


# Markdown, for the documentation site: the recorded runs in docs/*.json, as the
# performance page shows them.


def e2e_throughput_markdown(runs: list[dict]) -> str:
    """Images/s and CPU per image of the service and of the bare pipelines measured in the
    same run, for each run (the service's CPU split between the web tier and the workers)."""
    rows = []
    for r in runs:
        cpu, per = r["cpu"], r["cpu"]["cpu_ms_per_image"]
        rows.append([f"service, {r['model']}", f"{r['main']['images_per_second']:.1f}",
                     f"{cpu['cpu_ms_per_image_total']:.2f} (web {per['web']:.2f}, workers {per['worker']:.2f})"])
        rows += [[f"bare {name}, same run as {r['model']}", f"{b['images_per_second']:.1f}", f"{b['cpu_ms_per_image']:.2f}"]
                 for name, b in r["bare"].items()]
    main = runs[0]["main"]
    return _markdown([f"{main['concurrency']} clients, {main['requests']} requests", "images/s", "CPU ms per image"], rows)


def e2e_targets_markdown(runs: list[dict]) -> str:
    """The performance targets of each run side by side (a target one run has not is blank
    there), and every answer's check."""
    cells: dict[str, dict[str, str]] = {}
    place: dict[str, int] = {}  # a target sits where it comes first in any run: both service rows lead
    for r in runs:
        for i, t in enumerate(r["targets"]):
            target = t["target"].removeprefix(f"{r['model']} ")
            verdict = {True: " **pass**", False: " **fail**", None: ""}[t["passed"]]
            cells.setdefault(target, {})[r["model"]] = t["measured"] + verdict
            place[target] = min(i, place.get(target, i))
    models = [r["model"] for r in runs]
    rows = [[target, *(cells[target].get(m, "") for m in models)] for target in sorted(cells, key=place.__getitem__)]
    rows.append(["lost, 5xx, wrong labels (every answer checked)",
                 *(f"{r['lost_or_5xx_or_wrong']} of {r['requests'] * r['rounds']}" for r in runs)])
    return _markdown(["target", *models], rows)


def e2e_sweep_markdown(r: dict) -> str:
    """Throughput and latency at each concurrency of the run's sweep."""
    return _markdown(["clients", "images/s", "p50 ms", "p95 ms", "p99 ms"], [
        [str(s["concurrency"]), f"{s['images_per_second']:.1f}", f"{s['p50_ms']:.1f}", f"{s['p95_ms']:.1f}", f"{s['p99_ms']:.1f}"]
        for s in r["sweep"]
    ])


def e2e_stages_markdown(r: dict) -> str:
    """Milliseconds per image in each stage, loaded and idle, from the service's own timings."""
    return _markdown(["stage", f"{r['main']['concurrency']} clients", "idle, 1 client"], _stage_rows(r))


def replay_markdown(report: dict, agreement: float) -> str:
    """A `imgrec bench replay` report: each round's calibration, then live against simulated
    for each trace, and how many traces agree."""
    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}"

    calibrations = _markdown(
        ["calibration", "worker ms, batch of n", "outside the workers, median ms", "95th percentile ms",
         "CPU ms per image beside the workers", "start-ups s"],
        [[str(i), f"{c['service_a_ms']:g} + {c['service_b_ms']:.2f}·n", ms(c["overhead_ms"]), ms(c.get("overhead_p95_ms")),
          ms(c.get("side_cpu_ms")), ", ".join(f"{x:.2f}" for x in c["start_ups_s"])]
         for i, c in enumerate(report.get("calibrations", [report["model"]]), 1)],
    )
    shapes = report["shapes"]
    said = (f"{report['agreeing_shapes']} of {len(shapes)} traces agree within {agreement:.0%} on both figures "
            f"({report.get('repeats', 1)} live runs of each, pooled).")
    return "\n\n".join([calibrations, _markdown(REPLAY_COLUMNS, _replay_rows(report)), said])


def _peers_rows(r: dict) -> list[list[str]]:
    def line(name: str, run: dict | None, ratio: float | None = None) -> list[str]:
        if run is None:
            return [name, "not run", "", "", ""]
        rounds = " / ".join(f"{x:.1f}" for x in run.get("rounds_images_per_second", []))
        return [name, f"{run['images_per_second']:.1f}", rounds, f"{run['p50_ms']:.0f} / {run['p99_ms']:.0f}",
                f"{ratio:.2f}x" if ratio is not None else ""]

    bare, ratios = r["bare"], r["ratios"]
    engine_rounds = " / ".join(f"{x:.1f}" for x in bare["engine_rounds"])
    return [
        line(f"imgrec, 1 image per request, {r['concurrency']} clients", r["imgrec_single"],
             ratios["imgrec single / engine bare"]),
        line("imgrec, 100 images per request", r["imgrec_100_per_request"], ratios["imgrec 100 per request / engine bare"]),
        line(f"BentoML, 1 image per request, {r['concurrency']} clients", r["bentoml"],
             r["bentoml"]["images_per_second"] / bare["engine"] if r["bentoml"] else None),
        ["engine's bare pipeline (1 process per core)", f"{bare['engine']:.1f}", engine_rounds, "", "1.00x"],
        ["plain bare pipeline (no DCT draft)", f"{bare['plain']:.1f}", "", "", f"{bare['plain'] / bare['engine']:.2f}x"],
    ]


PEERS_COLUMNS = ["", "images/s (best)", "rounds", "p50 / p99 ms", "of the engine's bare"]


def peers_summary(r: dict) -> list[list[str]]:
    idle = r["idle_single_request"]
    failures = r["checked_failures"]
    return [
        ["imgrec / BentoML", f"{r['ratios']['imgrec / bentoml']:.2f}x" if r["ratios"]["imgrec / bentoml"] else "not run"],
        ["idle single request p50 (imgrec)", f"{idle['p50_ms']:.1f} ms"
         + (f" (bare + {r['idle_p50_over_bare_ms']:.1f} ms)" if "idle_p50_over_bare_ms" in r else "")],
        ["cold start (imgrec, 0 workers to the first answer)", f"{r['cold_start_seconds']:.2f} s"],
        ["lost, 5xx, wrong labels (every answer checked)", f"imgrec {failures['imgrec']}, BentoML {failures['bentoml']}"],
    ]


def peers_table(r: dict) -> Table:
    table = _table(f"{r['model']}: imgrec beside its peers ({r['requests']} requests, best of {r['rounds']} rounds)",
                   PEERS_COLUMNS, _peers_rows(r), first_left=True)
    for name, value in peers_summary(r):
        table.add_row(name, value, "", "", "")
    return table


def peers_markdown(runs: list[dict]) -> str:
    """Each recorded `imgrec bench peers` run: the rows, then the ratio to BentoML, idle
    latency, cold start and the answers' check."""
    parts = []
    for r in runs:
        parts.append(f"**{r['model']}**, {r['when']}, {r['requests']} requests, best of {r['rounds']} rounds:\n")
        parts.append(_markdown(PEERS_COLUMNS, _peers_rows(r)))
        parts.append("")
        parts.append(_markdown(["", ""], peers_summary(r)))
        parts.append("")
    return "\n".join(parts)
