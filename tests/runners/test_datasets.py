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
    ],
)
def test_bad_files_get_row_and_column_precise_errors(data: bytes, kw: dict[str, object], expected: str) -> None:
    found = issues(data, **kw)
    assert any(expected in message for message in found), found
