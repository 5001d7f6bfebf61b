"""A model's reply as safe HTML: Markdown rendered by markdown-it (raw HTML in the text is escaped, not
passed through), then cleaned by nh3 to an allow-list of tags, attributes and link schemes, so nothing a
model writes can run script or restyle the page. Streaming shows the plain text; the finished reply is
rendered once (the relay's ``done`` event and every later page load)."""

from __future__ import annotations

from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe

TAGS = {"p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "h1", "h2", "h3", "h4",
        "h5", "h6", "hr", "a", "table", "thead", "tbody", "tr", "th", "td"}
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}


@lru_cache(maxsize=1)
def _parser():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])


def render(text: str) -> SafeString:
    html = _parser().render(text or "")
    clean = nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                      link_rel="noopener noreferrer nofollow")
    return mark_safe(clean)  # noqa: S308 (cleaned by nh3 just above)
