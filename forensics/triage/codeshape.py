"""The structural fingerprint of comment lines in fenced code blocks: where a comment stands
in its code and whether it speaks of that code, whatever it says and in whatever syntax.

Why: a format quirk in code answers (a banner, a stray closing remark) is written in many
wordings that share no word, so text similarity alone splits it; its place in the code is
what the wordings share. :func:`comment_lines` lexes every fenced block with the pygments
lexer its fence names (``` ```lua ```; a maintained lexer knows each language's comment
syntax: ``#``, ``//``, ``--``, ``/* */``, ``<!-- -->``...); an unnamed or unknown language is
lexed with each of ``fallback`` lexers, a line counting as a comment when one of them says so.

A **comment line** is a non-empty line of the block all of whose non-blank characters lexed as
comment tokens (a docstring counts as one: documentation in a comment's role). Its :class:`CommentLine` fields:

* ``position``: ``first`` / ``last`` / ``inner`` among the block's non-empty lines (a block of
  that one line: ``only``);
* ``top_level``: it stands outside every statement: no bracket ``( [ {`` open before it and no
  more indentation than the block's least indented line;
* ``foreign``: none of its words (``min_word_chars`` letters or more, 3 by default) is a word of the block's identifiers (name
  tokens, split at ``_`` and camel case): it does not describe this code.

:attr:`CommentLine.shape` joins the three: the fingerprint two comments share when they play
the same role in their code (``last:top:foreign``).

**Marker lines** (:func:`marker_lines`) are the other places a marker sits in a code answer,
as :class:`CommentLine` records whose ``text`` is the marker and ``line`` the line it is on:

* ``eol``: a comment closing a line that holds code (``return x  # tag``); not top level;
* ``call``: a statement that only passes a string literal to a call (``print("here")``,
  ``console.log("x");``, ``echo "x"``): a fixed message, its ``text`` the literal's content;
  not top level (it is a statement);
* ``after``: the first prose line after a block's closing fence (top level);
* ``before``: the last prose line before a block's opening fence (top level);
* ``unused``: a statement of the block's preamble (the top-level lines before its first line
  that opens a body) whose words (of its names, strings and other non-keyword tokens) no
  other line of the block holds: a name brought in that nothing uses (``import x`` with no
  ``x.`` after it); top level.

``foreign`` is computed as for comment lines (the marker's words against the block's
identifier words, the marker's own line left out).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import lru_cache

_FENCE = re.compile(r"```([^\n`]*)\n(.*?)(?:```|\Z)", re.S)
_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])")
_OPEN, _CLOSE = "([{", ")]}"


@dataclass(frozen=True)
class CommentLine:
    """One comment line of a fenced code block (see the module docstring)."""

    text: str            # the line, stripped
    position: str        # first | last | inner | only
    top_level: bool
    foreign: bool
    lang: str            # the fence's language tag ("" when none)
    line: str = ""       # the whole line it stands on, stripped (marker lines: see below)

    @property
    def shape(self) -> str:
        """The fingerprint: ``position:top|nested:foreign|about``."""
        return (f"{self.position}:{'top' if self.top_level else 'nested'}:"
                f"{'foreign' if self.foreign else 'about'}")


@lru_cache(maxsize=256)
def _lexer(name: str):
    """The pygments lexer for a language name or alias, or ``None`` when pygments has none."""
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        return get_lexer_by_name(name, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


FALLBACK_LEXERS = ("python", "c", "sql", "html")


def _words(text: str, min_chars: int) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) >= min_chars}


def _lex(lexer, code: str) -> tuple[bytearray, list[tuple[int, str]], list[int]]:
    """(per character: 1 inside a comment token, name tokens as (offset, text), per line:
    bracket depth at its start)."""
    from pygments.token import Comment, Name, Operator, Punctuation, String

    mask = bytearray(len(code))
    names: list[tuple[int, str]] = []
    ends: list[tuple[int, int]] = []
    depth = 0
    for start, ttype, value in lexer.get_tokens_unprocessed(code):
        if (ttype in Comment and ttype not in Comment.Preproc
                and ttype not in Comment.PreprocFile) or ttype in String.Doc:
            end = min(start + len(value), len(code))
            mask[start:end] = b"\x01" * (end - start)
        elif ttype in Name:
            names.append((start, value))
        elif ttype in Punctuation or ttype in Operator:
            depth += sum(value.count(c) for c in _OPEN) - sum(value.count(c) for c in _CLOSE)
            depth = max(depth, 0)
            ends.append((start + len(value), depth))
    # bracket depth at each line start: the depth after the last bracket token before it
    line_depth, j, cur, offset = [], 0, 0, 0
    for line in code.split("\n"):
        while j < len(ends) and ends[j][0] <= offset:
            cur = ends[j][1]
            j += 1
        line_depth.append(cur)
        offset += len(line) + 1
    return mask, names, line_depth


def block_comment_lines(code: str, lang: str = "",
                        fallback: tuple[str, ...] = FALLBACK_LEXERS, min_word_chars: int = 3
                        ) -> list[CommentLine]:
    """The comment lines of one code block (its text without the fences) in ``lang`` (a
    pygments name or alias; unknown or empty: the ``fallback`` lexers)."""
    lines = code.split("\n")
    nonempty = [i for i, ln in enumerate(lines) if ln.strip()]
    if not nonempty:
        return []
    lexers = [lx for lx in ([_lexer(lang.lower())] if lang else []) if lx is not None]
    if not lexers:
        lexers = [lx for lx in (_lexer(n) for n in fallback) if lx is not None]
    if not lexers:
        return []
    # lexed with a final newline: line comments' rules end at one
    lexed = [_lex(lx, code + "\n") for lx in lexers]
    depth = lexed[0][2]
    base = min(len(lines[i]) - len(lines[i].lstrip()) for i in nonempty)
    offsets, off = [], 0
    for ln in lines:
        offsets.append(off)
        off += len(ln) + 1
    found: list[tuple[int, int]] = []  # (rank among non-empty lines, line index)
    for k, i in enumerate(nonempty):
        ln, o = lines[i], offsets[i]
        span = [o + c for c, ch in enumerate(ln) if not ch.isspace()]
        if any(all(m[0][c] for c in span) for m in lexed):
            found.append((k, i))
    if not found:
        return []
    # the code's identifier words: name tokens outside the comment lines (a lexer of another
    # language reads a comment's words as names)
    skip = {i for _, i in found}
    line_of = {o: i for i, o in enumerate(offsets)}
    starts = sorted(line_of)
    names: set[str] = set()
    for m in lexed:
        for start, value in m[1]:
            if line_of[starts[bisect.bisect_right(starts, start) - 1]] not in skip:
                names |= _words(value, min_word_chars)
    out: list[CommentLine] = []
    for k, i in found:
        ln = lines[i]
        pos = ("only" if len(nonempty) == 1 else "first" if k == 0
               else "last" if k == len(nonempty) - 1 else "inner")
        indent = len(ln) - len(ln.lstrip())
        out.append(CommentLine(ln.strip(), pos, depth[i] == 0 and indent <= base,
                               not (_words(ln, min_word_chars) & names), lang.lower()))
    return out


def comment_lines(text: str | None, fallback: tuple[str, ...] = FALLBACK_LEXERS,
                  min_word_chars: int = 3
                  ) -> list[CommentLine]:
    """The comment lines of every fenced code block of ``text``, in order."""
    if not text or "```" not in text:
        return []
    out: list[CommentLine] = []
    for m in _FENCE.finditer(text):
        tag = (m.group(1).strip().split() or [""])[0]
        out.extend(block_comment_lines(m.group(2).rstrip("\n"), tag, fallback,
                                       min_word_chars))
    return out


@lru_cache(maxsize=64)
def _marker_lexer(name: str):
    """:func:`_lexer`, except that a PHP snippet is lexed as code without its ``<?php`` tag."""
    if name == "php":
        from pygments.lexers import get_lexer_by_name

        return get_lexer_by_name(name, stripnl=False, ensurenl=False, startinline=True)
    return _lexer(name)


def _call_literal(tokens: list[tuple[object, str]]) -> str | None:
    """The string content when a line's tokens (type, value; blanks dropped) are a callee
    (names, keywords, ``.``), optional brackets and string literals only; else ``None``."""
    from pygments.token import Keyword, Name, Operator, Punctuation, String

    if not tokens or not (tokens[0][0] in Name or tokens[0][0] in Keyword):
        return None
    seen_string = False
    parts: list[str] = []
    for ttype, value in tokens:
        if ttype in String:
            if ttype in String.Interpol:
                return None
            seen_string = True
            if ttype not in String.Escape:
                parts.append(value)
        elif ttype in Name or ttype in Keyword:
            if seen_string:
                return None
        elif ttype in Punctuation or ttype in Operator:
            if value.strip() not in (".", "(", ")", ";", "::", "->", "!"):
                return None
        else:
            return None
    text = "".join(parts).strip().strip("\"'`").strip()
    return text if seen_string and _WORD.search(text) else None


def block_marker_lines(code: str, lang: str = "", fallback: tuple[str, ...] = FALLBACK_LEXERS,
                       min_word_chars: int = 3) -> list[CommentLine]:
    """The ``eol`` and ``call`` marker lines of one code block (see the module docstring)."""
    from pygments.token import Comment, Text, Whitespace

    lines = code.split("\n")
    lexers = [lx for lx in ([_marker_lexer(lang.lower())] if lang else []) if lx is not None]
    if not lexers:
        lexers = [lx for lx in (_lexer(n) for n in fallback) if lx is not None][:1]
    if not lexers or not code.strip():
        return []
    mask, names, _ = _lex(lexers[0], code + "\n")
    per_line: list[list[tuple[object, str]]] = [[] for _ in lines]
    offsets, off = [], 0
    for ln in lines:
        offsets.append(off)
        off += len(ln) + 1
    for start, ttype, value in lexers[0].get_tokens_unprocessed(code + "\n"):
        if not value.strip() or ttype in Whitespace or ttype in Text and not value.strip():
            continue
        i = bisect.bisect_right(offsets, start) - 1
        if 0 <= i < len(lines) and ttype not in Comment:
            per_line[i].append((ttype, value))
    found: list[tuple[int, str, str]] = []   # (line index, position, marker text)
    found += _unused_lines(lexers[0], code, lines, offsets, per_line)
    for i, ln in enumerate(lines):
        if any(f[0] == i for f in found):
            continue
        o = offsets[i]
        chars = [c for c, ch in enumerate(ln) if not ch.isspace()]
        if not chars:
            continue
        com = [c for c in chars if mask[o + c]]
        if com and len(com) < len(chars) and all(mask[o + c] for c in range(com[0], len(ln))
                                                 if not ln[c].isspace()) \
                and not mask[o + chars[0]]:
            found.append((i, "eol", ln[com[0]:].strip()))
            continue
        lit = _call_literal(per_line[i])
        if lit is not None and not com:
            found.append((i, "call", lit))
    if not found:
        return []
    skip = {i for i, _, _ in found}
    ident: set[str] = set()
    for start, value in names:
        i = bisect.bisect_right(offsets, start) - 1
        if i not in skip:
            ident |= _words(value, min_word_chars)
    return [CommentLine(text, pos, pos == "unused", not (_words(text, min_word_chars) & ident),
                        lang.lower(), lines[i].strip()) for i, pos, text in sorted(found)]


def _unused_lines(lexer, code: str, lines: list[str], offsets: list[int],
                  per_line: list[list[tuple[object, str]]]) -> list[tuple[int, str, str]]:
    """The ``unused`` marker lines of one block (see the module docstring): (line index,
    ``"unused"``, the stripped line)."""
    from pygments.token import Comment, Keyword, Operator, Punctuation, String

    nonempty = [i for i, ln in enumerate(lines) if ln.strip()]
    if len(nonempty) < 2:
        return []
    _, _, depth = _lex(lexer, code + "\n")
    base = min(len(lines[i]) - len(lines[i].lstrip()) for i in nonempty)

    def indent(i: int) -> int:
        return len(lines[i]) - len(lines[i].lstrip())

    # the preamble: top-level lines before the first one whose next line is nested (a body)
    pre: list[int] = []
    for a, b in zip(nonempty, nonempty[1:]):
        if depth[b] > 0 or indent(b) > base or depth[a] > 0 or indent(a) > base:
            break
        pre.append(a)
    if not pre:
        return []
    # words per line: every token but keywords, punctuation, operators and plain comments
    # (an include's file name lexes as a preprocessor comment)
    words: list[set[str]] = [set() for _ in lines]
    for start, ttype, value in lexer.get_tokens_unprocessed(code + "\n"):
        if ttype in Keyword or ttype in Punctuation or ttype in Operator or \
                ttype in String.Doc or (ttype in Comment and ttype not in Comment.Preproc):
            continue
        i = bisect.bisect_right(offsets, start) - 1
        if 0 <= i < len(lines):
            words[i] |= {w.lower() for w in _WORD.findall(value)}
    out = []
    for i in pre:
        rest = set().union(*(words[j] for j in nonempty if j != i))
        if words[i] and not (words[i] & rest):
            out.append((i, "unused", lines[i].strip()))
    return out


def marker_lines(text: str | None, fallback: tuple[str, ...] = FALLBACK_LEXERS,
                 min_word_chars: int = 3) -> list[CommentLine]:
    """The marker lines (``eol``, ``call``, ``unused``, ``before``, ``after``; see the module docstring) of every
    fenced code block of ``text``, in order."""
    if not text or "```" not in text:
        return []
    out: list[CommentLine] = []
    prev_end = 0
    for m in _FENCE.finditer(text):
        tag = (m.group(1).strip().split() or [""])[0]
        code = m.group(2).rstrip("\n")
        lead = text[prev_end:m.start()]
        before = next((ln.strip() for ln in reversed(lead.split("\n")) if ln.strip()), None)
        if before is not None:
            ident = _words(" ".join(code.split("\n")), min_word_chars)
            out.append(CommentLine(before, "before", True,
                                   not (_words(before, min_word_chars) & ident), tag.lower(),
                                   before))
        prev_end = m.end()
        out.extend(block_marker_lines(code, tag, fallback, min_word_chars))
        rest = text[m.end():].split("```", 1)[0]
        after = next((ln.strip() for ln in rest.split("\n") if ln.strip()), None)
        if after is not None and m.group(0).rstrip().endswith("```"):
            ident = _words(" ".join(code.split("\n")), min_word_chars)
            out.append(CommentLine(after, "after", True,
                                   not (_words(after, min_word_chars) & ident), tag.lower(),
                                   after))
    return out


__all__ = ["CommentLine", "block_comment_lines", "comment_lines", "block_marker_lines",
           "marker_lines"]
