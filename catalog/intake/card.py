"""Model cards: YAML front matter and safe Markdown rendering."""

from __future__ import annotations

import functools
from typing import Any

import nh3

MAX_CARD_CHARS = 200_000
CARD_FIELDS = ("license", "tags", "datasets", "language", "base_model", "pipeline_tag")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()][:50]
    return [str(value).strip()] if str(value).strip() else []


def card_split(text: str) -> tuple[dict[str, Any], str]:
    """(front matter, Markdown body) of a README; unparseable front matter is
    kept in the body and yields no metadata."""
    import yaml

    if not text.startswith("---"):
        return {}, text
    lines = text.splitlines(keepends=True)
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            try:
                meta = yaml.safe_load("".join(lines[1:i])) or {}
            except yaml.YAMLError:
                return {}, text
            if not isinstance(meta, dict):
                return {}, text
            return meta, "".join(lines[i + 1 :]).lstrip("\n")
    return {}, text


def card_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The card fields the catalogue keeps: licence (str), tags, datasets and
    language (lists), base model and pipeline tag (str)."""
    out: dict[str, Any] = {}
    license_ = meta.get("license")
    if isinstance(license_, (str, int, float)) and str(license_).strip():
        out["license"] = str(license_).strip()[:100]
    for key in ("tags", "datasets", "language"):
        values = _as_list(meta.get(key))
        if values:
            out[key] = values
    for key in ("base_model", "pipeline_tag"):
        value = meta.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if value:
            out[key] = str(value)[:200]
    return out


@functools.lru_cache(maxsize=1)
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # "html": False — raw HTML in the Markdown is shown as text, not passed on;
    # nh3 then sanitises what the renderer made (defence in depth).
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "img", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td",
    "th", "thead", "tr", "ul",
}  # fmt: skip


def card_render(markdown: str) -> str:
    """Sanitised HTML of a Markdown card: never a script, event handler or
    ``javascript:`` link."""
    html = _markdown().render(markdown[:MAX_CARD_CHARS])
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes={"a": {"href", "title"}, "img": {"src", "alt", "title"}, "td": {"align"}, "th": {"align"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
