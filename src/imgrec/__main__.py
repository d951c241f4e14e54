"""`python -m imgrec`: the same as the `imgrec` command."""

from imgrec.cli import run

run()
