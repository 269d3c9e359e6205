"""Markdown tables, the one form every table raytrain prints or writes takes (no Ray, no MLflow)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]], escape: bool = False) -> list[str]:
    """The lines of a Markdown table: the header row, the rule, one line per row (cells as ``str``; ``escape``: a
    ``|`` inside a cell is written ``\\|``). A row shorter than the header is padded with empty cells."""

    def line(cells: Sequence[object]) -> str:
        text = [str(c).replace("|", "\\|") if escape else str(c) for c in cells]
        return "| " + " | ".join([*text, *[""] * (len(header) - len(text))]) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]
