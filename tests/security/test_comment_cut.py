"""The sticky PR comment (summary.md + diff.md, up to 80,000 characters) is cut to GitHub's 65,536-character
limit at a line end, never inside a line: a raw cut inside an inline code span leaves its backtick unclosed,
and the data value before the cut (a sample key a pull request controls) renders as Markdown: a mention, an
image from another host, a link."""

from __future__ import annotations

from cascade_ci.github_api import COMMENT_LIMIT, MARKER, comment_body
from cascade_ci.report.markdown import code

EVIL = "@octocat ![x](https://evil.example/p.png) [sign in](https://evil.example/login)"


def test_a_cut_comment_keeps_every_code_span_closed() -> None:
    key_line = f"- {code('raw.readings')}: added, e.g. {code(EVIL + ' ' + 'z' * 150)}"
    filler = "| `raw.readings` | `check` | error | `message` |"
    lines = [filler] * ((COMMENT_LIMIT - len(MARKER) - 200) // (len(filler) + 1))
    body = "\n".join([*lines, key_line, *[filler] * 50])
    text = comment_body(body)
    assert len(text) <= COMMENT_LIMIT
    kept = text.splitlines()
    note = kept.index("") if "" in kept else len(kept)
    for line in kept[1:note]:  # after the marker, up to the cut note
        assert line in body.splitlines(), f"a line was cut in the middle: {line[-120:]!r}"
    assert all(line.count("`") % 2 == 0 for line in kept[1:note])


def test_a_short_comment_is_not_cut() -> None:
    body = f"- {code(EVIL)}"
    assert comment_body(body) == f"{MARKER}\n{body}"
