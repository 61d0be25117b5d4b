"""Tables as pandas DataFrames, written once to markdown, CSV and JSON.

Every table evo_nos shows (a hall of fame, a Pareto front, a compare report, reference
scores, a transfer check) is a DataFrame first; :func:`markdown` and
:func:`write_table` are the only places that turn one into text, and :func:`records`
the one that turns one back into plain rows.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from evo_nos.core.files import write_atomic


def records(frame: pd.DataFrame) -> list[dict]:
    """The rows of ``frame`` as dicts of plain Python values (missing values: None)."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def _cell(value, column: str, formats: dict, code: tuple) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in formats:
        text = formats[column](value) if callable(formats[column]) else \
            format(value, formats[column])
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    text = text.replace("|", "\\|")      # a pipe ends a cell, inside code spans too (GFM)
    return f"`{text}`" if column in code and text else text


def markdown(frame: pd.DataFrame, *, formats: dict | None = None, code=(),
             headers: dict | None = None) -> str:
    """A GitHub markdown table of ``frame`` (its columns, in order; the index is not
    shown).  ``formats`` maps a column to a format spec (``".4f"``) or a function;
    other floats print with ``g``; ``code`` names columns shown as inline code;
    ``headers`` maps a column to the header shown for it (default: its name); missing
    values are empty cells and ``|`` is escaped (also in code cells)."""
    formats, code, headers = dict(formats or {}), tuple(code), dict(headers or {})
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(headers.get(c, c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in frame.itertuples(index=False, name=None):
        cells = [_cell(v, c, formats, code) for v, c in zip(row, columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(frame: pd.DataFrame, stem: str | os.PathLike, *, formats: dict | None = None,
                code=(), headers: dict | None = None, title: str | None = None) -> dict:
    """Write ``frame`` as ``<stem>.md`` (:func:`markdown`, under ``title`` if given),
    ``<stem>.csv`` and ``<stem>.json`` (a list of :func:`records`, floats exact), each
    atomically; returns {"markdown": path, "csv": path, "json": path}."""
    stem = Path(stem)
    text = markdown(frame, formats=formats, code=code, headers=headers)
    if title:
        text = f"{title}\n\n{text}"
    paths = {"markdown": stem.with_suffix(".md"), "csv": stem.with_suffix(".csv"),
             "json": stem.with_suffix(".json")}
    write_atomic(paths["markdown"], text)
    write_atomic(paths["csv"], frame.to_csv(index=False))
    write_atomic(paths["json"], json.dumps(records(frame), indent=2, ensure_ascii=False,
                                           default=str) + "\n")
    return paths
