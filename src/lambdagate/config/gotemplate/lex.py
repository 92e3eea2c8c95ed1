"""Go `text/template` lexing: source text split into text runs and actions, each action into tokens.

Go's rules kept here: `{{- ` trims the whitespace before an action and ` -}}` the whitespace after it (the dash
needs a space beside it, or `{{-3}}` would be the number -3); `{{/* ... */}}` is a comment; a field (`.name`) is
attached to the term before it only when nothing separates them (`$x.a` is one operand, `$x .a` two).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lambdagate.config.gotemplate.errors import TemplateError

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<string>"(?:\\.|[^"\\\n])*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:\\.|[^'\\\n])+')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<variable>\$[A-Za-z0-9_]*)
  | (?P<field>\.[A-Za-z_][A-Za-z0-9_]*)
  | (?P<dot>\.)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
KEYWORDS = frozenset({"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"})
_SPACE = " \t\r\n"


@dataclass(frozen=True)
class Token:
    kind: str  # a _TOKEN group name, or "keyword"
    text: str
    line: int
    col: int
    spaced: bool  # whitespace (or the action's start) comes right before it


@dataclass(frozen=True)
class Item:
    """A run of text (`tokens` is None) or an action with its tokens, where it starts and how it is written."""

    text: str
    line: int
    col: int
    tokens: tuple[Token, ...] | None = None


class Source:
    """One template file's text with line/column lookups."""

    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def where(self, offset: int) -> tuple[int, int]:
        lo, hi = 0, len(self._starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - self._starts[lo] + 1

    def error(self, offset: int, message: str) -> TemplateError:
        line, col = self.where(offset)
        return TemplateError(f"template: {self.name}:{line}:{col}: {message}", self.name, line, col)


def lex(source: Source) -> list[Item]:
    """The file as text runs and actions, with the trim markers already applied to the text runs."""
    text, items, pos, trim_next = source.text, [], 0, False
    while True:
        start = text.find("{{", pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        trim_before = start >= 0 and text.startswith("{{-", start) and text[start + 3 : start + 4] in tuple(_SPACE)
        if trim_next:
            chunk = chunk.lstrip(_SPACE)
        if trim_before:
            chunk = chunk.rstrip(_SPACE)
        if chunk:
            items.append(Item(chunk, *source.where(pos)))
        if start < 0:
            return items
        inner = start + (3 if trim_before else 2)
        action, pos, trim_next = _action(source, start, inner, trim_before)
        if action is not None:
            items.append(action)


def _action(source: Source, start: int, pos: int, trimmed: bool) -> tuple[Item | None, int, bool]:
    """The action opened at `start` (its content begins at `pos`): its item (None for a comment), where the text
    after it begins, and whether that text is trimmed."""
    text = source.text
    body = pos + 1 if trimmed else pos  # a comment starts right after "{{" or "{{- "
    if text.startswith("/*", body):
        close = text.find("*/", body + 2)
        if close < 0:
            raise source.error(start, "unclosed comment")
        end, trim = _close_delimiter(source, close + 2, start, comment=True)
        return None, end, trim
    tokens: list[Token] = []
    spaced = True
    while True:
        if text.startswith("}}", pos) or (text.startswith("-}}", pos) and spaced):
            end, trim = _close_delimiter(source, pos, start)
            line, col = source.where(start)
            return Item(text[start:end], line, col, tuple(tokens)), end, trim
        match = _TOKEN.match(text, pos)
        if match is None:
            if pos >= len(text):
                raise source.error(start, "unclosed action")
            raise source.error(pos, f"unexpected {text[pos]!r} in command")
        kind = match.lastgroup or ""
        if kind == "space":
            spaced = True
        else:
            word = match.group()
            if kind == "word" and word in KEYWORDS:
                kind = "keyword"
            tokens.append(Token(kind, word, *source.where(pos), spaced))
            spaced = False
        pos = match.end()


def _close_delimiter(source: Source, pos: int, start: int, *, comment: bool = False) -> tuple[int, bool]:
    text = source.text
    rest = text[pos:]
    stripped = rest.lstrip(_SPACE)
    gap = len(rest) - len(stripped)
    if stripped.startswith("-}}") and (gap or not comment):
        return pos + gap + 3, True
    if stripped.startswith("}}") and (not gap or not comment):
        return pos + gap + 2, False
    raise source.error(start, "comment ends before closing delimiter" if comment else "unclosed action")
