"""Parsing and validation of labelled text datasets (CSV or JSON Lines).

Pure Python: bytes in, a ``LabelledText`` or a ``DatasetInvalid`` with row-
and column-precise issues out. Nothing is written anywhere.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 1024 * 1024
    max_rows: int = 200_000
    max_text_chars: int = 2_000
    max_labels: int = 200
    min_examples_per_label: int = 2
    max_issues: int = 50


@dataclass(frozen=True)
class Issue:
    message: str
    row: int | None = None  # 1-based data row (the CSV header is row 0)
    column: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class DatasetInvalid(ValueError):
    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(str(i) for i in issues[:5]))
        self.issues = issues


@dataclass
class LabelledText:
    texts: list[str]
    labels: list[str]
    format: str
    columns: list[str]
    label_counts: dict[str, int]
    duplicates: list[int] = field(default_factory=list)  # rows dropped as exact repeats

    @property
    def label_names(self) -> list[str]:
        return sorted(self.label_counts)

    @property
    def targets(self) -> list[int]:
        index = {name: i for i, name in enumerate(self.label_names)}
        return [index[label] for label in self.labels]


def detect_format(file_name: str, head: bytes) -> str:
    lowered = file_name.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lowered.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    return "jsonl" if head.lstrip()[:1] == b"{" else "csv"


def parse_labelled_text(
    data: bytes,
    *,
    file_name: str = "data.csv",
    text_column: str = "text",
    label_column: str = "label",
    limits: Limits | None = None,
) -> LabelledText:
    """Parse and validate a labelled text file.

    Raises:
        DatasetInvalid: with every issue found (up to ``limits.max_issues``).
    """
    limits = limits or Limits()
    if len(data) > limits.max_bytes:
        raise DatasetInvalid([Issue(f"the file is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes")])
    if not data.strip():
        raise DatasetInvalid([Issue("the file is empty")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetInvalid(
            [Issue(f"the file is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}, line {line})")]
        ) from exc
    if "\x00" in text:
        # A NUL is never text; PostgreSQL cannot store it either. Refuse it
        # with the lines that hold one rather than strip it silently.
        lines = [n for n, line in enumerate(text.splitlines(), start=1) if "\x00" in line]
        raise DatasetInvalid(
            [Issue(f"line {n} contains a NUL byte; remove it and upload again") for n in lines[: limits.max_issues]]
        )
    fmt = detect_format(file_name, data[:64])
    # Reading stops one row past the limit: a file of millions of tiny rows is
    # refused without parsing them all.
    rows, columns = (_read_jsonl if fmt == "jsonl" else _read_csv)(text, limits.max_rows + 1)
    issues: list[Issue] = []
    for name, role in ((text_column, "text"), (label_column, "label")):
        if name not in columns:
            found = ", ".join(repr(c[:40]) for c in columns[:10]) or "none"
            more = f" and {len(columns) - 10:,} more" if len(columns) > 10 else ""
            issues.append(Issue(f"no {role} column named {name!r}; the columns are {found}{more}", column=name))
    if issues:
        # Unreadable lines explain a missing column (a JSONL file none of whose lines parsed).
        unreadable = [row for _, row in rows if isinstance(row, Issue)]
        raise DatasetInvalid((unreadable + issues)[: limits.max_issues])
    if not rows:
        raise DatasetInvalid([Issue("the file has a header but no data rows")])
    if len(rows) > limits.max_rows:
        raise DatasetInvalid([Issue(f"more than {limits.max_rows:,} rows; the limit is {limits.max_rows:,}")])

    texts: list[str] = []
    labels: list[str] = []
    seen: set[tuple[str, str]] = set()
    duplicates: list[int] = []
    for number, row in rows:
        if isinstance(row, Issue):
            issues.append(row)
            continue
        value, label = _cell(row.get(text_column)), _cell(row.get(label_column))
        for cell, column in ((value, text_column), (label, label_column)):
            if isinstance(cell, Issue):
                issues.append(Issue(cell.message, row=number, column=column))
        if isinstance(value, Issue) or isinstance(label, Issue):
            if len(issues) >= limits.max_issues:
                break
            continue
        if not value:
            issues.append(Issue("the text is empty", row=number, column=text_column))
        elif len(value) > limits.max_text_chars:
            issues.append(
                Issue(
                    f"the text is {len(value):,} characters; the limit is {limits.max_text_chars:,}",
                    row=number,
                    column=text_column,
                )
            )
        if not label:
            issues.append(Issue("the label is empty", row=number, column=label_column))
        if len(issues) >= limits.max_issues:
            break
        if (value, label) in seen:
            duplicates.append(number)
            continue
        seen.add((value, label))
        texts.append(value)
        labels.append(label)
    if issues:
        raise DatasetInvalid(issues[: limits.max_issues])

    counts = Counter(labels)
    if len(counts) < 2:
        raise DatasetInvalid([Issue(f"at least 2 labels are needed; found {len(counts)}", column=label_column)])
    if len(counts) > limits.max_labels:
        raise DatasetInvalid(
            [
                Issue(
                    f"{len(counts):,} distinct labels; the limit is {limits.max_labels:,} "
                    "(merge rare labels, or ask an administrator to raise DATASET_MAX_LABELS)",
                    column=label_column,
                )
            ]
        )
    rare = sorted(name for name, n in counts.items() if n < limits.min_examples_per_label)
    if rare:
        raise DatasetInvalid(
            [
                Issue(
                    f"label {name!r} has {counts[name]} example; each label needs at least "
                    f"{limits.min_examples_per_label}",
                    column=label_column,
                )
                for name in rare[: limits.max_issues]
            ]
        )
    return LabelledText(
        texts=texts,
        labels=labels,
        format=fmt,
        columns=columns,
        label_counts=dict(sorted(counts.items())),
        duplicates=duplicates,
    )


def _cell(value: Any) -> str | Issue:
    """A text or label cell as a stripped string; a JSON object or array is
    refused (``str()`` of one is not text, and a deep one would recurse)."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return Issue("must be a string, not a JSON object or array")
    text = str(value).strip()
    if "\x00" in text:  # a JSON "\u0000" escape
        return Issue("contains a NUL character")
    return text


def _read_csv(text: str, max_rows: int) -> tuple[list[tuple[int, dict[str, Any] | Issue]], list[str]]:
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error):
        return [], []
    rows: list[tuple[int, dict[str, Any] | Issue]] = []
    try:
        for number, cells in enumerate(reader, start=1):
            if len(rows) >= max_rows:
                break
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                rows.append((number, Issue(f"{len(cells)} fields; the header has {len(header)}", row=number)))
                continue
            rows.append((number, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        rows.append((reader.line_num, Issue(f"unreadable CSV: {exc}", row=reader.line_num)))
    return rows, header


def _read_jsonl(text: str, max_rows: int) -> tuple[list[tuple[int, dict[str, Any] | Issue]], list[str]]:
    rows: list[tuple[int, dict[str, Any] | Issue]] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if len(rows) >= max_rows:
            break
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append((number, Issue(f"not valid JSON: {exc.msg}", row=number)))
            continue
        except ValueError as exc:  # e.g. an integer of more than 4,300 digits
            rows.append((number, Issue(f"not valid JSON: {exc}", row=number)))
            continue
        except RecursionError:
            # ``[[[[…]]]]`` thousands of levels deep exhausts the parser's stack.
            rows.append((number, Issue("the JSON is nested too deeply", row=number)))
            continue
        if not isinstance(obj, dict):
            rows.append((number, Issue("each line must be a JSON object", row=number)))
            continue
        columns.update(dict.fromkeys(obj))
        rows.append((number, obj))
    return rows, list(columns)
