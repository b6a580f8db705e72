"""Markdown to HTML for Qt's rich text (QTextBrowser), with highlighted code.

markdown-it-py (CommonMark + tables + strikethrough) and Pygments. What the model writes is
never interpreted as HTML or script: raw HTML is off (it comes out as escaped text), link
targets other than http(s)/mailto are dropped, and every text node is escaped. Broken
Markdown renders as best it can; invalid UTF-8 (bytes) is decoded with replacement marks.

Qt's rich text knows a subset of HTML/CSS: inline styles only, no classes from a
stylesheet, so Pygments writes inline styles (noclasses) and tables get explicit borders.
Each fenced code block is numbered: its copy link is `copy:N` (the view resolves it with
`code_blocks(text)[N]`), links open only when clicked (the view decides).

A long message can be rendered in parts (`to_html_parts`): groups of whole top-level blocks,
each an HTML fragment of its own, so the view can parse each into a small document (Qt's
parser holds Python's GIL for the whole call: one 50k-character parse froze every thread for
~25 ms). A part begins with a paragraph, a heading or a quote, never inside a list or table.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from itertools import pairwise

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

MAX_HIGHLIGHT_CHARS = 200_000  # above this a code block is shown plain: Pygments is slow
SAFE_LINK = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)
CODE_STYLE = "default"
NEWLINES = re.compile(r"\r\n?")


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


# Top-level blocks a part may begin with: Qt puts each in a block of its own formats, so a
# part's document joined after the one before (a new block in the part's first block's
# formats) makes the same document as the whole HTML parsed at once. A list or a table does
# not join that way (Qt merges a list into the block before it, a table leaves one more).
PART_STARTS = ("paragraph_open", "heading_open", "blockquote_open")


def to_html_parts(text: str | bytes, part_chars: int, first_code: int = 0) -> list[str]:
    """`to_html(text, first_code)` cut into parts of whole top-level blocks, each at least
    `part_chars` characters of Markdown (the last one may be shorter; a part is longer when
    no block it may begin with comes sooner). Joined they are `to_html(text, first_code)`."""
    text = as_text(text)
    md = _renderer()
    env = {"code_n": first_code}
    try:
        tokens = md.parse(text, env)
        line_at = [0]  # where each line begins (lines as the parser counts them)
        for line in NEWLINES.sub("\n", text).split("\n"):
            line_at.append(line_at[-1] + len(line) + 1)
        cuts, begun = [0], 0
        for i, token in enumerate(tokens):
            if token.level or token.type not in PART_STARTS or not token.map or not i:
                continue
            at = line_at[min(token.map[0], len(line_at) - 1)]
            if at - begun >= part_chars:
                cuts.append(i)
                begun = at
        cuts.append(len(tokens))
        parts = [  # one env: code blocks are numbered on from part to part, as in the whole
            _qt_friendly(md.renderer.render(tokens[a:b], md.options, env))
            for a, b in pairwise(cuts)
        ]
    except Exception:  # as to_html: a parser bug must not lose the message
        return [to_html(text, first_code)]
    return parts or [""]


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
