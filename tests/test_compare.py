import csv
import io
import json
import re

import pytest

from results_fixtures import PROTOCOL, make_document
from roadanomaly.cli import main

METRICS = (("auprc", "AuPRC"), ("fpr95", "FPR95"), ("auroc", "AUROC"))


def _write(tmp_path, name, document):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document))
    return path


def _runs(tmp_path):
    a = make_document(seed=0)
    b = make_document(seed=1)
    b["results"] = [r for r in b["results"] if not (r["dataset"] == "fs_static" and r["method"] == "entropy")]
    return {"A": a, "B": b}, [_write(tmp_path, "A", a), _write(tmp_path, "B", b)]


def _expected(documents, digits):
    """(dataset, method) -> header -> the cell text, computed from the documents."""
    keys = [(r["dataset"], r["method"]) for r in documents["A"]["results"]]
    out = {}
    for key in keys:
        cells = {}
        for metric, title in METRICS:
            for name, document in documents.items():
                row = next((r for r in document["results"] if (r["dataset"], r["method"]) == key), None)
                cells[f"{title} % {name}"] = None if row is None else f"{100 * row[metric]:.{digits}f}"
        out[key] = cells
    return out


def _parse_terminal(text):
    lines = text.splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    return header, [line.split() for line in lines[2:]]


def _parse_markdown(text):
    lines = text.splitlines()
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    assert set(lines[1]) <= set("|-:")
    return split(lines[0]), [split(line) for line in lines[2:]]


def _parse_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def _parse_latex(text):
    lines = text.splitlines()
    assert lines[0].startswith(r"\begin{tabular}") and lines[-1] == r"\end{tabular}"
    groups = re.findall(r"\\multicolumn\{(\d+)\}\{c\}\{([^}]*) \(\\%\)\}", lines[2])
    names = [c.strip() for c in lines[4].rstrip("\\ ").split("&")][2:]
    header = ["dataset", "method"]
    for count, title in groups:
        header += [f"{title} % {n}" for n in names[: int(count)]]
    body = [line for line in lines[lines.index(r"\midrule") + 1 : -2] if line != r"\midrule"]
    cells = [[c.strip().replace(r"\_", "_") for c in line.removesuffix(r" \\").split("&")] for line in body]
    return header, cells


PARSERS = {"terminal": _parse_terminal, "markdown": _parse_markdown, "csv": _parse_csv, "latex": _parse_latex}


@pytest.mark.parametrize("fmt", list(PARSERS))
def test_each_format_parses_back_to_the_documents_numbers(tmp_path, capsys, fmt):
    documents, paths = _runs(tmp_path)
    assert main(["compare", *map(str, paths), "--format", fmt]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # same protocol: no warning
    header, rows = PARSERS[fmt](captured.out.strip())
    expected = _expected(documents, digits=4 if fmt == "csv" else 2)
    assert header == ["dataset", "method", *next(iter(expected.values()))]
    assert [tuple(r[:2]) for r in rows] == list(expected)
    for row in rows:
        for title, cell in zip(header[2:], row[2:]):
            bold = re.fullmatch(r"\*\*(.*)\*\*|\\textbf\{(.*)\}", cell)
            text = next(g for g in bold.groups() if g) if bold else cell
            want = expected[tuple(row[:2])][title]
            assert text == (want if want is not None else ("" if fmt == "csv" else "-")), (row[:2], title)


def test_markdown_bolds_each_rows_best_run(tmp_path, capsys):
    documents, paths = _runs(tmp_path)
    main(["compare", *map(str, paths), "--format", "markdown", "--names", "base,new"])
    header, rows = _parse_markdown(capsys.readouterr().out)
    assert header[2:4] == ["AuPRC % base", "AuPRC % new"]
    for row in rows:
        key = tuple(row[:2])
        for i, (metric, _) in enumerate(METRICS):
            a, b = (next((r[metric] for r in d["results"] if (r["dataset"], r["method"]) == key), None)
                    for d in documents.values())
            cells = row[2 + 2 * i : 4 + 2 * i]
            if b is None:
                assert not any(c.startswith("**") for c in cells)
                continue
            better_a = a < b if metric == "fpr95" else a > b
            assert [c.startswith("**") for c in cells] == ([True, False] if better_a else [False, True])


def test_differing_protocols_warn_loudly_on_stderr_naming_the_fields(tmp_path, capsys):
    a = make_document(seed=0)
    b = make_document(seed=0, protocol={**PROTOCOL, "size": "512x1024", "temperature": 2.0})
    c = make_document(seed=0, protocol={k: v for k, v in PROTOCOL.items() if k != "void_label"})
    paths = [_write(tmp_path, n, d) for n, d in (("a", a), ("b", b), ("c", c))]
    assert main(["compare", *map(str, paths)]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0] == ("roadanomaly: WARNING: the protocols differ in size, temperature, void_label: "
                        "these numbers are not comparable")
    assert lines[1:] == ["  size: a=native; b=512x1024; c=native", "  temperature: a=1.0; b=2.0; c=1.0",
                         "  void_label: a=255; b=255; c=<absent>"]
    assert "RoadAnomaly21" in captured.out  # the table is still printed


def test_compare_writes_to_a_file(tmp_path, capsys):
    _, paths = _runs(tmp_path)
    out = tmp_path / "cmp" / "table.tex"
    assert main(["compare", *map(str, paths), "--format", "latex", "--output", str(out)]) == 0
    assert capsys.readouterr().out == f"comparison written to {out}\n"
    assert out.read_text().startswith(r"\begin{tabular}")


def test_compare_user_mistakes(tmp_path, capsys):
    _, paths = _runs(tmp_path)
    assert main(["compare", str(paths[0])]) == 2
    assert capsys.readouterr().err == "roadanomaly: error: compare needs at least two results files\n"
    assert main(["compare", str(paths[0]), str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err == f"roadanomaly: error: {tmp_path / 'missing.json'}: no such results file\n"
    assert main(["compare", *map(str, paths), "--names", "x"]) == 2
    assert capsys.readouterr().err == "roadanomaly: error: --names gives 1 name(s) for 2 results files\n"
