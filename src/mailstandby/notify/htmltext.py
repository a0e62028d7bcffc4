"""The readable text of an HTML mail part, in time linear in its length.

Used for the excerpt of a forwarded summary, so the input is whatever an
outside sender put in a message. Invariants:

- one left-to-right pass: every search (`str.find`) starts where the last one
  ended and an unterminated construct (a tag without `>`, a comment without
  `-->`, a script without its end tag) ends the text, so no byte is looked at
  more than a constant number of times, whatever the input (a body full of `<`
  cost the old `<[^>]+>` regex time quadratic in its size);
- the input is cut at `MAX_HTML` characters first;
- `<script>`, `<style>` and comments are dropped, block-level tags and `<br>`
  become a space, other tags nothing, character references are decoded
  (`html.unescape`, bounded per reference); a `<` that cannot start a tag
  (`a < b`) is text, as HTML parsers read it.

Not an HTML parser: it never builds a tree and ignores what an excerpt does not
need. The stdlib's `html.parser` is not used because CPython 3.11's has
quadratic cases (an unterminated `<a ` repeated: about 20 s for 32 KB).
"""

from __future__ import annotations

import html

MAX_HTML = 256 * 1024  # characters of an HTML part looked at; an excerpt needs far fewer
_DROPPED = ("script", "style")  # raw text elements whose content is not text
_BLOCK = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "td",
        "th",
        "tr",
        "ul",
    ]
)


def _tag_name(html_text: str, start: int, end: int) -> str:
    """The lower-cased name of the tag between `<` (at start) and `>` (at end), without a leading `/`."""
    i = start + 1
    if i < end and html_text[i] == "/":
        i += 1
    j = i
    while j < end and (html_text[j].isalnum() or html_text[j] == "-") and j - i < 32:
        j += 1
    return html_text[i:j].lower()


def _raw_text_end(html_text: str, name: str, start: int) -> int:
    """Where the element `name` whose content starts at `start` ends (after its end tag), or -1."""
    at = start
    while True:
        at = html_text.find("</", at)
        if at < 0:
            return -1
        if html_text[at + 2 : at + 2 + len(name)].lower() == name:
            close = html_text.find(">", at)
            return -1 if close < 0 else close + 1
        at += 2


def html_to_text(source: str) -> str:
    """The text of `source` (an HTML document or fragment), tags removed, references decoded."""
    text = source[:MAX_HTML]
    n = len(text)
    out: list[str] = []
    i = 0
    while i < n:
        lt = text.find("<", i)
        if lt < 0:
            out.append(text[i:])
            break
        out.append(text[i:lt])
        nxt = text[lt + 1 : lt + 2]
        if not (nxt.isalpha() or nxt in ("/", "!", "?")):
            out.append("<")  # not a tag: text
            i = lt + 1
            continue
        if text.startswith("<!--", lt):
            end = text.find("-->", lt + 4)
            if end < 0:
                break
            i = end + 3
            continue
        gt = text.find(">", lt + 1)
        if gt < 0:
            break  # an unterminated tag: nothing after it is text
        name = _tag_name(text, lt, gt)
        i = gt + 1
        if name in _DROPPED and nxt != "/" and text[gt - 1] != "/":
            i = _raw_text_end(text, name, i)
            if i < 0:
                break
        out.append(" " if name in _BLOCK or name in _DROPPED else "")
    joined = "".join(out)
    try:
        return html.unescape(joined)
    except ValueError:  # a numeric reference longer than int() takes (4300 digits): leave references as written
        return joined
