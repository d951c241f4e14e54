"""The `imgrec` command: parses arguments and delegates; no logic lives here.

The settings are built once, in the callback, from the environment; a command's
flags override them (`Settings.with_overrides`), and a child process receives
the result through its environment (`Settings.to_env`). Each command's module
imports what it runs only when it runs, so `imgrec status` never loads a model.

Other packages add commands through the entry-point group `imgrec.commands` (the
lab's `bench` and `simulate`): this package names none of them, and loads one
only when it is asked for.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import typer
from pydantic import ValidationError
from rich.console import Console
from typer.core import TyperGroup, _click  # typer's own click, which its groups are made of

from imgrec import logs
from imgrec.cli import local, models, ops, service
from imgrec.errors import ConfigError
from imgrec.settings import Settings

PLUGINS = "imgrec.commands"
err = Console(stderr=True)


class WithPlugins(TyperGroup):
    """Its own commands, then those registered under the entry-point group PLUGINS."""

    def _plugins(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=PLUGINS) if ep.name not in self.commands}

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return [*super().list_commands(ctx), *sorted(self._plugins())]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and (plugin := self._plugins().get(cmd_name)) is not None:
            command = typer.main.get_command(plugin.load())
            command.name = cmd_name  # a plugin's app need not know the name it is given
        return command


app = typer.Typer(cls=WithPlugins, no_args_is_help=True, add_completion=False, help="Elastic image recognition.")
model_app = typer.Typer(no_args_is_help=True, help="Build or add, inspect, push, pull, list or roll back ONNX models.")
queue_app = typer.Typer(no_args_is_help=True, help="Check or salvage the SQLite queue's file.")


@app.callback()
def main(ctx: typer.Context) -> None:
    """Elastic image recognition: upload images, get ImageNet labels back."""
    try:
        ctx.obj = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"IMGREC_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad setting: {problems}") from None
    logs.configure(ctx.obj.log_format)


# The service, as it runs on a host.
app.command("up")(service.up)
app.command("web")(service.web)
app.command("worker")(service.worker)
app.command("autoscaler")(service.autoscaler)
app.command("init")(service.init)
app.command("config")(service.config)
# A running service, from anywhere with its settings or its URL.
app.command("submit")(ops.submit)
app.command("status")(ops.status)
app.command("gc")(ops.gc)
app.command("health")(ops.health)
app.add_typer(queue_app, name="queue")
queue_app.command("check")(ops.queue_check)
queue_app.command("salvage")(ops.queue_salvage)
# The model, and the model here without a service.
app.add_typer(model_app, name="model")
model_app.command("build")(models.build)
model_app.command("info")(models.info)
model_app.command("push")(models.push)
model_app.command("pull")(models.pull)
model_app.command("add")(models.add)
model_app.command("list")(models.list_models)
model_app.command("rollback")(models.rollback)
app.command("classify")(local.classify)
app.command("eval")(local.evaluate)


def run() -> None:
    """The console script: a configuration error is one clear line, not a traceback."""
    try:
        app(prog_name="imgrec")
    except ConfigError as exc:
        err.print(f"imgrec: {exc}", markup=False, soft_wrap=True)  # one line, and [aws] is no markup
        raise SystemExit(2) from None
