"""Markdown rendering for the chat view, and what a hostile or broken model sends."""

from __future__ import annotations

import pytest

from layerlab.core.chat.render import code_blocks, plain_html, to_html, to_html_parts


def test_headings_lists_tables_links_and_code():
    out = to_html(
        "# Title\n\n- one\n- two\n\n1. first\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "Use `x = 1` and see [the docs](https://example.org/docs).\n\n"
        "```python\ndef f():\n    return 1\n```\n"
    )
    assert "<h1>Title</h1>" in out and "<ul>" in out and "<ol>" in out
    assert "<th>a</th>" in out and "<td>2</td>" in out and 'border="1"' in out
    assert '<a href="https://example.org/docs">the docs</a>' in out
    assert "<code" in out and "x = 1" in out
    assert 'href="copy:0"' in out and "python" in out
    assert 'style="color: #008000; font-weight: bold">def</span>' in out  # highlighted
    assert code_blocks("```python\ndef f():\n    return 1\n```\n") == ["def f():\n    return 1\n"]


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert('x')</script>",
        '<img src=x onerror="alert(1)">',
        "<b>bold?</b> <style>body{display:none}</style>",
        '<a href="javascript:alert(1)">click</a>',
        "<iframe src='https://evil.example'></iframe>",
    ],
)
def test_html_and_script_from_the_model_show_as_text(hostile):
    out = to_html(hostile)
    assert "<script" not in out and "<img" not in out and "<style" not in out
    assert "<iframe" not in out and "<b>" not in out and 'href="javascript' not in out
    assert "&lt;" in out  # shown, as text


def test_only_web_and_mail_links_are_links():
    out = to_html(
        "[a](javascript:alert(1)) [b](file:///etc/passwd) [c](mailto:x@y.z) [d](data:text/html,hi)"
    )
    assert 'href="mailto:x@y.z"' in out
    assert 'href="javascript' not in out
    assert 'href="file' not in out and 'href="data' not in out


def test_a_5000_line_code_block_and_a_1_mb_message_render_whole():
    code = "\n".join(f"x_{i} = {i}  # <not html>" for i in range(5000))
    out = to_html(f"```python\n{code}\n```\n")
    assert out.count("x_") == 5000 and "<not html>" not in out
    assert code_blocks(f"```python\n{code}\n```\n") == [code + "\n"]
    big = ("word " * 210_000)[: 1 << 20]
    assert len(to_html(big)) > 1 << 20


def test_invalid_utf8_broken_markdown_and_nuls_never_raise():
    assert "\ufffd" in to_html(b"caf\xc3 \xff\xfe ok")
    for broken in ["```python\nunclosed", "| a |\n|---", "[link](", "**bold", "> " * 500, "\x00x"]:
        out = to_html(broken)
        assert isinstance(out, str) and "\x00" not in out
    assert "unclosed" in to_html("```python\nunclosed")


def test_a_persons_own_text_is_shown_as_typed():
    out = plain_html("<b>hi</b>\n# not a heading")
    assert "&lt;b&gt;hi&lt;/b&gt;<br># not a heading" in out


def test_a_long_message_renders_in_parts_of_whole_blocks_that_join_as_the_whole():
    blocks = [
        "Some *words* and `code`.\n\n" * 30,
        "## A heading\n\n",
        "- one\n- two\n\n" * 5,
        "```python\nx = 1\n```\n\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n",
        "> quoted\n\n",
        "---\n\n",
    ]
    text = "".join(blocks) * 40
    for part_chars in (1, 300, 4_000, 10**9):
        for first_code in (0, 7):
            parts = to_html_parts(text, part_chars, first_code)
            assert "".join(parts) == to_html(text, first_code)  # copy links numbered as one
            assert all(p.startswith(("<p>", "<h2>", "<blockquote>")) for p in parts[1:])
            if part_chars == 300:  # whole blocks of at least 300 characters of Markdown
                assert len(text) // 1_000 < len(parts) <= len(text) // 300 + 1
    assert len(to_html_parts(text, 10**9)) == 1
    assert to_html_parts("", 100) == [to_html("")]
    assert to_html_parts(b"caf\xc3 ok\x00", 1) == [to_html(b"caf\xc3 ok\x00")]
