"""Reading results documents for presentation: the plain-dict form, checked, with one-line errors.

Readers here work on the dict that :meth:`roadanomaly.results.ResultsDocument.to_dict` writes (``{"protocol",
"model", "results": [...], "curves", "histograms", ...extras}``); :func:`as_dict` accepts that dict or a
``ResultsDocument``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadanomaly.errors import UserError, first_line
from roadanomaly.results import PIXEL_METRICS, ResultsDocument

ROW_KEYS: tuple[str, ...] = ("dataset", "method", *PIXEL_METRICS, "pixels", "anomaly_pixels", "images")
"""Keys every row of ``results`` must have."""


def results_document(
    protocol: dict[str, Any], model: dict[str, Any], results: Sequence[Any], **extra: Any
) -> dict[str, Any]:
    """The JSON results document: ``{"protocol", "model", "results": [...]}`` plus any extra fields."""
    rows = [r if isinstance(r, dict) else r.to_dict() for r in results]
    return {"protocol": protocol, "model": model, "results": rows, **extra}


def as_dict(document: Any) -> dict[str, Any]:
    """The plain-dict form of a results document (a dict is returned as is)."""
    if isinstance(document, dict):
        return document
    to_dict = getattr(document, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"not a results document: {type(document).__name__}")


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and check a results file, as the plain dict :class:`~roadanomaly.results.ResultsDocument` writes.

    A missing, non-JSON or wrongly shaped file is a :class:`UserError` naming the file and the first problem.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(path, "no such results file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(path, f"not readable JSON ({first_line(error)})") from None
    check_document(data, path)
    return ResultsDocument.from_dict(data, path).to_dict()


def check_document(document: Any, where: str | Path | None = None) -> None:
    """Raise a :class:`UserError` naming the first thing that makes ``document`` not a results document."""
    problem = _shape_problem(document)
    if problem is not None:
        raise UserError(where, f"not a roadanomaly results file: {problem}")


def _shape_problem(document: Any) -> str | None:
    if not isinstance(document, dict):
        return f"expected a JSON object, found {_json_type(document)}"
    if not isinstance(document.get("results"), list):
        return "no \"results\" list"
    for key in ("protocol", "model"):
        if key in document and not isinstance(document[key], dict):
            return f"\"{key}\" is {_json_type(document[key])}, expected an object"
    for i, row in enumerate(document["results"]):
        if not isinstance(row, dict):
            return f"results[{i}] is {_json_type(row)}, expected an object"
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            return f"results[{i}] lacks {', '.join(repr(k) for k in missing)}"
        for key in ("dataset", "method"):
            if not isinstance(row[key], str):
                return f"results[{i}].{key} is {_json_type(row[key])}, expected a string"
        for key in ("pixels", "anomaly_pixels", "images"):
            if not isinstance(row[key], int) or isinstance(row[key], bool):
                return f"results[{i}].{key} is {_json_type(row[key])}, expected an integer"
        for key in PIXEL_METRICS:
            if row[key] is not None and not _is_number(row[key]):
                return f"results[{i}].{key} is {_json_type(row[key])}, expected a number or null"
    for key in ("curves", "histograms"):
        if key in document and not isinstance(document[key], list):
            return f"\"{key}\" is {_json_type(document[key])}, expected a list"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if _is_number(value) else type(value).__name__)
