"""Markdown to HTML for Qt's rich text (QTextBrowser), with highlighted code.

markdown-it-py (CommonMark + tables + strikethrough) and Pygments. What the model writes is
never interpreted as HTML or script: raw HTML is off (it comes out as escaped text), link
targets other than http(s)/mailto are dropped, and every text node is escaped. Broken
Markdown renders as best it can; invalid UTF-8 (bytes) is decoded with replacement marks.

Qt's rich text knows a subset of HTML/CSS: inline styles only, no classes from a
stylesheet, so Pygments writes inline styles (noclasses) and tables get explicit borders.
Each fenced code block is numbered: its copy link is `copy:N` (the view resolves it with
`code_blocks(text)[N]`), links open only when clicked (the view decides).
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

MAX_HIGHLIGHT_CHARS = 200_000  # above this a code block is shown plain: Pygments is slow
SAFE_LINK = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)
CODE_STYLE = "default"


def _md() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = lambda url: bool(SAFE_LINK.match(url.strip()))  # type: ignore[method-assign]

    def fence(_renderer, tokens, idx, _options, env) -> str:
        token = tokens[idx]
        n = env.setdefault("code_n", 0)
        env["code_n"] = n + 1
        lang = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
        body = _highlight(token.content, lang)
        label = html.escape(lang) if lang else "code"
        return (
            '<table width="100%" cellspacing="0" cellpadding="6" '
            'style="background-color:#f6f8fa; border: 1px solid #d0d7de; margin: 4px 0;">'
            f'<tr><td style="color:#57606a; font-size: small;">{label}'
            f'&nbsp;&nbsp;<a href="copy:{n}">Copy</a></td></tr>'
            f"<tr><td>{body}</td></tr></table>\n"
        )

    md.add_render_rule("fence", fence)
    md.add_render_rule("code_block", fence)
    return md


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    return _md()


def _highlight(code: str, lang: str) -> str:
    if lang and len(code) <= MAX_HIGHLIGHT_CHARS:
        try:
            lexer = get_lexer_by_name(lang, stripnl=False)
        except ClassNotFound:
            lexer = None
        if lexer is not None:
            formatter = HtmlFormatter(noclasses=True, nowrap=True, style=CODE_STYLE)
            out = highlight(code, lexer, formatter)
            return f'<pre style="margin:0; font-family: monospace;">{out}</pre>'
    return f'<pre style="margin:0; font-family: monospace;">{html.escape(code)}</pre>'


def as_text(text: str | bytes) -> str:
    """Text the model sent, as a str: bytes that are not UTF-8 become replacement marks,
    and NULs (which cut Qt's strings) are dropped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.replace("\x00", "")


def to_html(text: str | bytes, first_code: int = 0) -> str:
    """Markdown to an HTML fragment for Qt's rich text. Never raises on what a model writes.
    `first_code`: the number of the first code block (a part of a message rendered on its
    own numbers its copy links as in the whole)."""
    text = as_text(text)
    try:
        body = _renderer().render(text, {"code_n": first_code})
    except Exception:  # a parser bug must not lose the message: show it as plain text
        body = f"<pre>{html.escape(text)}</pre>"
    return _qt_friendly(body)


def _qt_friendly(body: str) -> str:
    # Qt draws tables without borders unless told on the element itself.
    body = body.replace(
        "<table>",
        '<table border="1" cellspacing="0" cellpadding="4" style="border-collapse:collapse;">',
    )
    return body.replace(
        "<code>", '<code style="background-color:#eff1f3; font-family: monospace;">'
    )


def code_blocks(text: str | bytes) -> list[str]:
    """The fenced and indented code blocks of a message, in order (for Copy)."""
    tokens = _renderer().parse(as_text(text), {})
    return [t.content for t in tokens if t.type in ("fence", "code_block")]


def plain_html(text: str | bytes) -> str:
    """Text shown exactly as typed (the person's own messages): escaped, line breaks kept."""
    return (
        '<p style="white-space: pre-wrap;">'
        + html.escape(as_text(text)).replace("\n", "<br>")
        + "</p>"
    )
