"""The documentation site's pages, read back: their tables from the built HTML (the
site's tests, tests/docs)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(page: Path) -> list[list[list[str]]]:
    """Every table of a built page, each a list of rows of cell texts (header first)."""
    parser = _Tables()
    parser.feed(page.read_text())
    return parser.tables


def table(page: Path, *header: str) -> list[list[str]]:
    """The rows (without the header) of the one table whose header starts so."""
    (found,) = [t[1:] for t in tables(page) if t and t[0][: len(header)] == list(header)]
    return found
