"""Flags that several commands share, each naming the setting it overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Threads = Annotated[int, typer.Option(help="onnxruntime intra-op threads (default: all cores)")]
Host = Annotated[str | None, typer.Option(help="Address to listen on [IMGREC_HOST, default 127.0.0.1]")]
Port = Annotated[int | None, typer.Option(help="Port [IMGREC_PORT, default 8000]")]
MinWorkers = Annotated[int | None, typer.Option(help="Fewest workers [IMGREC_MIN_WORKERS, default 0]")]
MaxWorkers = Annotated[int | None, typer.Option(help="Most workers [IMGREC_MAX_WORKERS, default: CPU count]")]
ScaleInDelay = Annotated[
    float | None, typer.Option(help="Seconds of lower demand before scaling in [IMGREC_SCALE_IN_DELAY, default 10]")
]
# `--idle-timeout` once meant the scale-in delay for `up` and `autoscaler`; it still
# does there, hidden, so that existing scripts keep working.
OldScaleInDelay = Annotated[float | None, typer.Option("--idle-timeout", hidden=True)]
Variant = Annotated[str | None, typer.Option(help="lite0, lite0-int8, lite2 or lite2-int8 [IMGREC_MODEL, default lite0]")]
Paths = Annotated[list[Path], typer.Argument(exists=True, help="Image files and folders (searched recursively)")]
CsvOut = Annotated[Path | None, typer.Option("--csv", help="Write one row per image to this CSV file")]
# The client's key. IMGREC_API_KEY, one letter from the service's IMGREC_API_KEYS, still works.
ApiKey = Annotated[str | None, typer.Option(
    help="The service's API key, if it needs one [IMGREC_CLIENT_KEY, or the older IMGREC_API_KEY]",
    envvar=["IMGREC_CLIENT_KEY", "IMGREC_API_KEY"], show_envvar=False,
)]
