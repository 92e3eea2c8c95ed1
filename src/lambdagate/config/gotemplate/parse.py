"""Go `text/template` parsing: items from the lexer into a tree of nodes, and `define`d templates by name.

The tree mirrors Go's parse package, reduced to what templates need: text, actions (pipelines), if/range/with with
their `else` (and `else if`/`else with` chains sharing one `end`), template/block/define, break/continue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lambdagate.config.gotemplate.lex import Item, Source, Token, lex


@dataclass
class Node:
    line: int
    col: int


@dataclass
class Literal(Node):
    value: Any


@dataclass
class Dot(Node):
    pass


@dataclass
class FieldChain(Node):
    """`.a.b` (receiver None: the dot), `$x.a`, or `(pipeline).a`."""

    names: tuple[str, ...]
    receiver: Node | None = None


@dataclass
class Variable(Node):
    name: str


@dataclass
class Function(Node):
    name: str


@dataclass
class Command(Node):
    args: list[Node]


@dataclass
class Pipeline(Node):
    commands: list[Command]
    decl: tuple[str, ...] = ()
    assign: bool = False  # `=` rather than `:=`


@dataclass
class Text(Node):
    text: str


@dataclass
class Action(Node):
    pipe: Pipeline
    source: str  # as written, for error messages ("at <.service.port>")


@dataclass
class Branch(Node):
    kind: str  # if, range, with
    pipe: Pipeline
    body: list[Node]
    otherwise: list[Node] = field(default_factory=list)
    source: str = ""


@dataclass
class Call(Node):
    """`{{template "name" pipeline}}`."""

    name: str
    pipe: Pipeline | None
    source: str = ""


@dataclass
class LoopControl(Node):
    kind: str  # break, continue


@dataclass
class Template:
    name: str
    file: str  # the file it was defined in, for error positions
    body: list[Node]


class _Parser:
    def __init__(self, source: Source, functions: frozenset[str], templates: dict[str, Template]) -> None:
        self.source, self.functions, self.templates = source, functions, templates
        self.items = lex(source)
        self.at = 0
        self.loops = 0

    def error(self, where: Item | Token | Node, message: str) -> Exception:
        from lambdagate.config.gotemplate.errors import TemplateError

        name = self.source.name
        return TemplateError(f"template: {name}:{where.line}:{where.col}: {message}", name, where.line, where.col)

    def parse_list(self, context: str) -> tuple[list[Node], Item | None]:
        """Nodes up to the `end` or `else` that closes `context` (returned with it), or to the end of the file."""
        nodes: list[Node] = []
        while self.at < len(self.items):
            item = self.items[self.at]
            self.at += 1
            if item.tokens is None:
                nodes.append(Text(item.line, item.col, item.text))
                continue
            first = item.tokens[0] if item.tokens else None
            if first is None:
                raise self.error(item, "missing value for command")
            if first.kind == "keyword" and first.text in ("end", "else"):
                if context == "file":
                    raise self.error(first, f"unexpected {{{{{first.text}}}}}")
                return nodes, item
            node = self.parse_action(item, first)
            if node is not None:
                nodes.append(node)
        if context != "file":
            raise self.error(self.items[-1] if self.items else Item("", 1, 1), f"unexpected EOF in {context}")
        return nodes, None

    def parse_action(self, item: Item, first: Token) -> Node | None:
        tokens = list(item.tokens or ())
        if first.kind != "keyword":
            return Action(item.line, item.col, self.pipeline(item, tokens, decl_ok=True), item.text)
        word = first.text
        if word in ("if", "range", "with"):
            return self.branch(item, word, tokens[1:])
        if word in ("template", "block"):
            return self.call(item, word, tokens[1:])
        if word == "define":
            self.define(item, tokens[1:])
            return None
        if word in ("break", "continue"):
            if not self.loops:
                raise self.error(first, f"{{{{{word}}}}} outside {{{{range}}}}")
            if len(tokens) > 1:
                raise self.error(tokens[1], f"unexpected {tokens[1].text} in {word}")
            return LoopControl(first.line, first.col, word)
        raise self.error(first, f"unexpected keyword {word}")

    def branch(self, item: Item, kind: str, tokens: list[Token]) -> Branch:
        pipe = self.pipeline(item, tokens, decl_ok=True, range_decl=kind == "range")
        self.loops += kind == "range"
        body, closer = self.parse_list(kind)
        self.loops -= kind == "range"
        otherwise: list[Node] = []
        if closer is not None and closer.tokens and closer.tokens[0].text == "else":
            rest = list(closer.tokens[1:])
            if rest and rest[0].kind == "keyword" and rest[0].text == kind and kind in ("if", "with"):
                otherwise = [self.branch(closer, kind, rest[1:])]  # `else if`: the nested branch takes the `end`
            elif rest:
                raise self.error(rest[0], f"unexpected {rest[0].text} after else")
            else:
                otherwise, closer = self.parse_list(kind)
                if closer is not None and closer.tokens and closer.tokens[0].text == "else":
                    raise self.error(closer, "expected end; found {{else}}")
        elif closer is not None and len(closer.tokens or ()) > 1:
            raise self.error(closer.tokens[1], "unexpected value after end")  # type: ignore[index]
        return Branch(item.line, item.col, kind, pipe, body, otherwise, item.text)

    def template_name(self, item: Item, tokens: list[Token], what: str) -> str:
        if not tokens or tokens[0].kind not in ("string", "raw"):
            raise self.error(tokens[0] if tokens else item, f'unexpected name in {what}: write {what} "name"')
        return str(_literal(tokens[0]))

    def call(self, item: Item, word: str, tokens: list[Token]) -> Call:
        name = self.template_name(item, tokens, word)
        pipe = self.pipeline(item, tokens[1:], decl_ok=False) if len(tokens) > 1 else None
        if word == "block":
            self.define_body(item, name)
        return Call(item.line, item.col, name, pipe, item.text)

    def define(self, item: Item, tokens: list[Token]) -> None:
        name = self.template_name(item, tokens, "define")
        if len(tokens) > 1:
            raise self.error(tokens[1], f"unexpected {tokens[1].text} in define clause")
        self.define_body(item, name)

    def define_body(self, item: Item, name: str) -> None:
        loops, self.loops = self.loops, 0
        body, closer = self.parse_list("define")
        self.loops = loops
        if closer is not None and closer.tokens and closer.tokens[0].text == "else":
            raise self.error(closer, "unexpected {{else}} in define")
        # As Go's text/template: a later definition replaces an earlier one, unless it is empty.
        if name not in self.templates or not _is_empty(body):
            self.templates[name] = Template(name, self.source.name, body)

    def pipeline(self, item: Item, tokens: list[Token], *, decl_ok: bool, range_decl: bool = False) -> Pipeline:
        cursor = _Cursor(self, item, tokens)
        decl, assign = cursor.declaration(range_decl) if decl_ok else ((), False)
        pipe = cursor.pipeline(decl, assign)
        if cursor.peek() is not None:
            raise self.error(cursor.peek(), f"unexpected {cursor.peek().text} in operand")  # type: ignore[union-attr]
        return pipe


class _Cursor:
    """Reads one action's tokens as a pipeline: commands separated by `|`, operands, parenthesised pipelines."""

    def __init__(self, parser: _Parser, item: Item, tokens: list[Token]) -> None:
        self.parser, self.item, self.tokens, self.i = parser, item, tokens, 0

    def peek(self, ahead: int = 0) -> Token | None:
        return self.tokens[self.i + ahead] if self.i + ahead < len(self.tokens) else None

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def declaration(self, range_decl: bool) -> tuple[tuple[str, ...], bool]:
        kinds = [t.kind for t in self.tokens[self.i : self.i + 4]]
        if kinds[:2] in (["variable", "declare"], ["variable", "assign"]):
            name = self.take().text
            return (name,), self.take().kind == "assign"
        if range_decl and kinds[:3] == ["variable", "comma", "variable"] and kinds[3:4] in (["declare"], ["assign"]):
            first, _, second = self.take(), self.take(), self.take()
            return (first.text, second.text), self.take().kind == "assign"
        return (), False

    def pipeline(self, decl: tuple[str, ...] = (), assign: bool = False) -> Pipeline:
        start = self.peek() or self.item
        commands = [self.command(0)]
        while (token := self.peek()) is not None and token.kind == "pipe":
            self.take()
            commands.append(self.command(len(commands)))
        return Pipeline(start.line, start.col, commands, decl, assign)

    def command(self, stage: int) -> Command:
        start = self.peek() or self.item
        args: list[Node] = []
        while (token := self.peek()) is not None and token.kind not in ("pipe", "rparen"):
            args.append(self.operand())
        if not args:
            raise self.parser.error(start, "missing value for command")
        if stage and isinstance(args[0], (Literal, Dot)):
            raise self.parser.error(start, f"non executable command in pipeline stage {stage + 1}")
        return Command(start.line, start.col, args)

    def operand(self) -> Node:
        term = self.term()
        names: list[str] = []
        while (token := self.peek()) is not None and token.kind == "field" and not token.spaced:
            names.append(self.take().text[1:])
        if not names:
            return term
        if isinstance(term, FieldChain) and term.receiver is None:
            return FieldChain(term.line, term.col, term.names + tuple(names))
        if isinstance(term, (Literal, Dot)):
            raise self.parser.error(term, "unexpected . after term")
        return FieldChain(term.line, term.col, tuple(names), term)

    def term(self) -> Node:
        token = self.take()
        kind, line, col = token.kind, token.line, token.col
        if kind == "field":
            return FieldChain(line, col, (token.text[1:],))
        if kind == "dot":
            return Dot(line, col)
        if kind == "variable":
            return Variable(line, col, token.text)
        if kind == "lparen":
            pipe = self.pipeline()
            if (close := self.peek()) is None or close.kind != "rparen":
                raise self.parser.error(token, "unclosed left paren")
            self.take()
            return pipe
        if kind == "word":
            if token.text in ("true", "false", "nil"):
                return Literal(line, col, NIL if token.text == "nil" else token.text == "true")
            if token.text not in self.parser.functions:
                raise self.parser.error(token, f'function "{token.text}" not defined')
            return Function(line, col, token.text)
        if kind in ("string", "raw", "char", "number"):
            return Literal(line, col, _literal(token))
        raise self.parser.error(token, f"unexpected {token.text!r} in operand")


class _Nil:
    """Go's untyped `nil` literal."""

    def __repr__(self) -> str:
        return "nil"


NIL = _Nil()
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}


def _unquote(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        code = body[i + 1]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[code]
            out.append(chr(int(body[i + 2 : i + 2 + width], 16)))
            i += 2 + width
        else:  # octal \ooo
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
    return "".join(out)


def _literal(token: Token) -> Any:
    text = token.text
    if token.kind == "string":
        return _unquote(text[1:-1])
    if token.kind == "raw":
        return text[1:-1]
    if token.kind == "char":
        return ord(_unquote(text[1:-1]))
    digits = text.replace("_", "")
    if digits.lstrip("+-")[:2].lower() == "0x":
        return int(digits, 16)
    if any(c in digits for c in ".eE"):
        return float(digits)
    return int(digits)


def _is_empty(body: list[Node]) -> bool:
    return all(isinstance(node, Text) and not node.text.strip() for node in body)


def parse(name: str, text: str, functions: frozenset[str], templates: dict[str, Template]) -> None:
    """Parse one file: its top level becomes template `name`, and each `define`/`block` its own, in `templates`."""
    parser = _Parser(Source(name, text), functions, templates)
    body, _ = parser.parse_list("file")
    if name not in templates or not _is_empty(body):
        templates[name] = Template(name, name, body)
