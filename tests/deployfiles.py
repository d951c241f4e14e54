"""Reading the deploy files as the tools that use them would, offline: kustomize's
rendering (the few features deploy/kubernetes uses), the Dockerfile's instructions,
an `imgrec` command line checked against the real CLI, the settings' variables."""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import typer
import yaml

from imgrec import cli
from imgrec.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir())
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def yaml_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# --- kustomize ------------------------------------------------------------------------


def kustomize(folder: Path, objects: list[dict] | None = None) -> list[dict]:
    """The objects `kubectl kustomize folder` gives, for the features used here: resources,
    components, a namespace, ConfigMap generators (create or merge, literals), images. Generated
    names keep no hash suffix (kustomize adds one and rewrites the references)."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - {"apiVersion", "kind", "namespace", "resources", "components", "configMapGenerator", "images"}
    assert not unknown, f"{folder}: this renderer does not know {unknown}"
    objects = [] if objects is None else objects
    for entry in spec.get("resources", []):
        path = folder / entry
        if path.is_dir():
            objects.extend(kustomize(path))
        else:
            objects.extend(copy.deepcopy(yaml_documents(path)))
    for entry in spec.get("components", []):
        component = folder / entry
        assert yaml.safe_load((component / "kustomization.yaml").read_text())["kind"] == "Component"
        kustomize(component, objects)
    for generator in spec.get("configMapGenerator", []):
        _generate_config_map(folder, generator, objects)
    for image in spec.get("images", []):  # what `kustomize edit set image` writes
        _set_image(image, objects)
    if "namespace" in spec:
        for o in objects:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = spec["namespace"]
    return objects


def _set_image(image: dict, objects: list[dict]) -> None:
    for _, c in containers(objects):
        if c["image"].split(":")[0] == image["name"]:
            name = image.get("newName", image["name"])
            c["image"] = f"{name}:{image.get('newTag', c['image'].partition(':')[2])}"


def _generate_config_map(folder: Path, generator: dict, objects: list[dict]) -> None:
    data = dict(literal.split("=", 1) for literal in generator.get("literals", []))
    found = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == generator["name"]]
    if generator.get("behavior") == "merge":
        assert found, f"{folder}: nothing to merge into for {generator['name']}"
        found[0]["data"].update(data)
    else:
        assert not found, f"{folder}: {generator['name']} made twice"
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def containers(objects: list[dict]) -> list[tuple[dict, dict]]:
    """(workload, container) for every container of every pod template."""
    out = []
    for o in objects:
        template = o.get("spec", {}).get("template") or o.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template")
        for c in (template or {}).get("spec", {}).get("containers", []):
            out.append((o, c))
    return out


# --- the Dockerfile ---------------------------------------------------------------------

INSTRUCTIONS = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def dockerfile_stages(path: Path) -> list[Stage]:
    """The stages of a Dockerfile with their instructions (continuations joined, comments
    and parser directives dropped); an unknown instruction fails."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "a continuation that never ends"
    stages: list[Stage] = []
    for line in lines:
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        assert keyword in INSTRUCTIONS, f"unknown instruction {keyword}"
        if keyword == "FROM":
            words = arg.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, words[0]))
        elif stages:
            stages[-1].instructions.append((keyword, arg.strip()))
    return stages


def env_pairs(arg: str) -> dict[str, str]:
    """An ENV instruction's variables (the key=value form)."""
    return dict(word.split("=", 1) for word in shlex.split(arg))


# --- the imgrec command line and its settings -------------------------------------------------


def check_command(args: list[str]) -> str:
    """Parse `imgrec <args>` as the real CLI would, without running it; returns the command's
    name. Unknown commands, options or bad values raise the parser's errors."""
    command = typer.main.get_command(cli.app)
    names, rest = [], list(args)
    while hasattr(command, "list_commands"):  # a group (typer has a click of its own)
        assert rest, f"imgrec {' '.join(args)}: no command"
        name, rest = rest[0], rest[1:]
        sub = command.get_command(command.context_class(command), name)
        assert sub is not None, f"imgrec has no command {name!r}"
        command, names = sub, [*names, name]
    command.make_context("imgrec " + " ".join(names), rest, resilient_parsing=False)
    return " ".join(names)


SETTING_VARIABLES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def settings_from(env: dict[str, str]) -> Settings:
    """The Settings the processes would build from these IMGREC_* variables (validated)."""
    unknown = {k for k in env if k.startswith(ENV_PREFIX)} - SETTING_VARIABLES
    assert not unknown, f"no such settings: {sorted(unknown)}"
    values = {k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    return Settings.model_validate(values)
