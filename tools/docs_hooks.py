"""mkdocs hooks (mkdocs.yml `hooks:`): the parts of the pages that are made, not typed.

A page asks for one with a marker on a line of its own, between blank lines:

    <!-- generated: settings -->          every setting, its default and meaning (imgrec.settings.markdown_table)
    <!-- generated: openapi -->           the API reference, from the web tier's OpenAPI schema
    <!-- generated: e2e-throughput -->    the recorded `imgrec bench e2e` runs (docs/e2e*.json, E2E_RUNS) ...
    <!-- generated: e2e-targets -->       ... their performance targets
    <!-- generated: e2e-sweep -->         ... the fp32 run's concurrency sweep
    <!-- generated: e2e-stages -->        ... and its time per stage
    <!-- generated: replay FILE -->       a recorded `imgrec bench replay` (docs/FILE)
    <!-- generated: peers -->             the recorded `imgrec bench peers` runs (docs/peers-*.json, PEERS_RUNS)

The renderers of the recorded runs are the lab's (imgrec.lab.report); the schema is also
written to the site as openapi.json. A marker that names nothing known fails the build.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
# The pages document the code beside them, whichever checkout the environment installed.
sys.path.insert(0, str(ROOT / "src"))

MARKER = re.compile(r"^<!-- generated: ([\w-]+)(?: ([\w.-]+))? -->$", re.MULTILINE)
E2E_RUNS = ("e2e.json", "e2e-lite0-int8.json")  # fp32 first: its sweep and stages are the ones shown
PEERS_RUNS = ("peers-lite0.json", "peers-lite0-int8.json")
SCHEMA = "openapi.json"
KEYED = "when `IMGREC_API_KEYS` is set, as `X-API-Key: <key>` or `Authorization: Bearer <key>`"


@cache
def openapi() -> dict:
    """The web tier's schema, made without starting anything."""
    from imgrec.settings import Settings
    from imgrec.web.app import create_app

    return create_app(Settings()).openapi()


def _run(docs: Path, name: str) -> dict:
    return json.loads((docs / name).read_text())


def _schema_type(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_schema_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_schema_type(schema.get('items', {}))}"
    if schema.get("format") == "binary":
        return "file"
    return schema.get("type", "any")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _operation(method: str, path: str, op: dict) -> str:
    from imgrec.web.auth import OPEN_PATHS

    lines = [f"### `{method.upper()} {path}`", "", _cell(op.get("summary", "")), ""]
    params = [
        f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | {_schema_type(p.get('schema', {}))} |"
        f" {p.get('schema', {}).get('default', '')} |"
        for p in op.get("parameters", [])
    ]
    for content_type, body in op.get("requestBody", {}).get("content", {}).items():
        schema, required = body.get("schema", {}), set(body.get("schema", {}).get("required", []))
        params += [
            f"| `{name}` | body ({content_type}) | {'yes' if name in required else 'no'} | {_schema_type(prop)} | |"
            for name, prop in schema.get("properties", {}).items()
        ]
    if params:
        lines += ["| parameter | in | required | type | default |", "| --- | --- | --- | --- | --- |", *params, ""]
    key = "never (an open path)" if path in OPEN_PATHS else KEYED
    lines += [f"API key: {key}.", "", "| status | when | body |", "| --- | --- | --- |"]
    for status, answer in op.get("responses", {}).items():
        body = ", ".join(f"`{t}`" for t in answer.get("content", {}))
        lines.append(f"| {status} | {_cell(answer.get('description', ''))} | {body} |")
    return "\n".join(lines)


def openapi_reference() -> str:
    schema = openapi()
    parts = [f"Generated from the schema of imgrec {schema['info']['version']} (OpenAPI {schema['openapi']})."]
    parts += [_operation(method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    return "\n\n".join(parts)


def _generators(arg: str | None, docs: Path) -> dict[str, Callable[[], str]]:
    """What makes the Markdown each marker's name stands for (`arg`: the marker's file)."""
    from imgrec.lab import report
    from imgrec.lab.scaling.replay import AGREEMENT
    from imgrec.settings import markdown_table

    def e2e() -> list[dict]:
        return [_run(docs, name) for name in E2E_RUNS]

    return {
        "settings": markdown_table,
        "openapi": openapi_reference,
        "e2e-throughput": lambda: report.e2e_throughput_markdown(e2e()),
        "e2e-targets": lambda: report.e2e_targets_markdown(e2e()),
        "e2e-sweep": lambda: report.e2e_sweep_markdown(e2e()[0]),
        "e2e-stages": lambda: report.e2e_stages_markdown(e2e()[0]),
        "replay": lambda: report.replay_markdown(_run(docs, arg or "(no file named)"), AGREEMENT),
        "peers": lambda: report.peers_markdown([_run(docs, name) for name in PEERS_RUNS]),
    }


def _escape_html(markdown: str) -> str:
    """`<` and `>` as text outside code spans: `<data dir>` is a value, not an HTML tag."""
    pieces = markdown.split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(pieces))


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs = Path(config["docs_dir"])

    def replace(match: re.Match) -> str:
        generate = _generators(match.group(2), docs).get(match.group(1))
        if generate is None:
            raise PluginError(f"{page.file.src_uri}: nothing generates {match.group(0)}")
        try:
            return _escape_html(generate())
        except FileNotFoundError as exc:
            raise PluginError(f"{page.file.src_uri}: {match.group(0)} names no recorded run ({exc})") from exc

    return MARKER.sub(replace, markdown)


def on_files(files, config):
    """The schema, as a file of the site (so that pages may link to it)."""
    files.append(File.generated(config, SCHEMA, content=json.dumps(openapi(), indent=1)))
    return files
