"""Optional dependencies: a missing one fails with the exact command that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(RuntimeError):
    pass


def require(module: str, extra: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"{what} needs the '{module}' package; install it with: pip install 'imgrec[{extra}]'"
        ) from None
