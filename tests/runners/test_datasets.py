from __future__ import annotations

import pytest

from runners.datasets import DatasetInvalid, Limits, parse_labelled_text


def issues(data: bytes, **kw: object) -> list[str]:
    with pytest.raises(DatasetInvalid) as exc:
        parse_labelled_text(data, **kw)  # type: ignore[arg-type]
    return [str(i) for i in exc.value.issues]


def test_a_good_csv_with_duplicates_reported() -> None:
    data = b"text,label\nhello there,a\nbye now,b\nhello there,a\nsee you,b\nhi,a\n"
    parsed = parse_labelled_text(data)
    assert parsed.label_counts == {"a": 2, "b": 2}
    assert parsed.duplicates == [3]
    assert parsed.label_names == ["a", "b"]
    assert parsed.targets == [0, 1, 1, 0]


def test_jsonl_and_custom_columns() -> None:
    data = b'{"body": "one", "y": "x"}\n{"body": "two", "y": "x"}\n{"body": "three", "y": "z"}\n{"body": "four", "y": "z"}\n'
    parsed = parse_labelled_text(data, file_name="d.jsonl", text_column="body", label_column="y")
    assert parsed.format == "jsonl"
    assert parsed.texts == ["one", "two", "three", "four"]


@pytest.mark.parametrize(
    ("data", "kw", "expected"),
    [
        (b"", {}, "the file is empty"),
        (b"   \n", {}, "the file is empty"),
        (b"text,label\n", {}, "no data rows"),
        (b"sentence,label\na,b\n", {}, "no text column named 'text'; the columns are 'sentence', 'label'"),
        (b"text,label\nhi,a\nho,a\nhu,a\n", {}, "at least 2 labels are needed; found 1"),
        (b"text,label\nhi,a\nho,a\nhu,b\n", {}, "label 'b' has 1 example"),
        (b"text,label\nhi,a\n,a\nhu,b\nhe,b\n", {}, "row 2, column 'text': the text is empty"),
        (b"text,label\nhi,a\nho,\nhu,b\nhe,b\n", {}, "row 2, column 'label': the label is empty"),
        (b"text,label\nhi,a,extra\nho,a\n", {}, "row 1: 3 fields; the header has 2"),
        (
            b"text,label\n" + b"x" * 50 + b",a\nho,a\nhu,b\nhe,b\n",
            {"limits": Limits(max_text_chars=10)},
            "row 1, column 'text': the text is 50 characters; the limit is 10",
        ),
        (b"text,label\nhi,a\nho,a\n", {"limits": Limits(max_bytes=10)}, "the limit is 10 bytes"),
        (b"text,label\ncaf\xe9,a\n", {}, "not UTF-8 (byte 0xe9 at offset 14, line 2)"),
        (b'{"text": "a", "label": "x"}\nnot json\n', {"file_name": "d.jsonl"}, "row 2: not valid JSON"),
        (
            b'{"text": "a", "label": "x"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n",
            {"file_name": "d.jsonl"},
            "row 2: the JSON is nested too deeply",
        ),
        (
            b'{"text": "a", "label": "x"}\n{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b', "label": "y"}\n',
            {"file_name": "d.jsonl"},
            "row 2: the JSON is nested too deeply",
        ),
        (
            b'{"text": "a", "label": "x"}\n{"text": "b", "label": ' + b"9" * 5000 + b"}\n",
            {"file_name": "d.jsonl"},
            "row 2: not valid JSON: Exceeds the limit",
        ),
        (
            b'{"text": ["a"], "label": "x"}\n{"text": "b", "label": "x"}\n',
            {"file_name": "d.jsonl"},
            "row 1, column 'text': must be a string, not a JSON object or array",
        ),
        (
            b'{"text": "a\\u0000", "label": "x"}\n{"text": "b", "label": "x"}\n',
            {"file_name": "d.jsonl"},
            "row 1, column 'text': contains a NUL character",
        ),
        (b"text,label\nhi,a\nh\x00o,a\nhu,b\nhe,b\n", {}, "line 3 contains a NUL byte"),
        (b"text,label\n" + b"x,a\n" * 30, {"limits": Limits(max_rows=10)}, "more than 10 rows"),
        (
            b"text,label\n" + b"".join(b"t%d,l%d\nu%d,l%d\n" % (i, i, i, i) for i in range(6)),
            {"limits": Limits(max_labels=5)},
            "column 'label': 6 distinct labels; the limit is 5",
        ),
    ],
)
def test_bad_files_get_row_and_column_precise_errors(data: bytes, kw: dict[str, object], expected: str) -> None:
    found = issues(data, **kw)
    assert any(expected in message for message in found), found


def test_a_pathological_header_gets_a_short_message() -> None:
    found = issues(b",".join(b"c%d" % i for i in range(10_000)) + b"\n" + b",".join([b"x"] * 10_000) + b"\n")
    assert all(len(message) < 400 for message in found), found
    assert "and 9,990 more" in found[0]


def test_thousands_of_rare_labels_report_a_bounded_list() -> None:
    data = b"text,label\n" + b"".join(b"t%d,l%d\n" % (i, i) for i in range(3000))
    found = issues(data, limits=Limits(max_labels=10_000))
    assert 0 < len(found) <= Limits().max_issues
