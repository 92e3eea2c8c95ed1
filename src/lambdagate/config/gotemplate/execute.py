"""Go `text/template` execution: walks a parsed tree against data and writes the output.

Bounded, because a config template is code the gateway runs: the output size, the nesting of `template` calls and
the number of steps are capped, and exceeding a cap is a TemplateError like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lambdagate.config.gotemplate.errors import TemplateError
from lambdagate.config.gotemplate.parse import (
    NIL,
    Action,
    Branch,
    Call,
    Command,
    Dot,
    FieldChain,
    Function,
    Literal,
    LoopControl,
    Node,
    Pipeline,
    Template,
    Text,
    Variable,
)
from lambdagate.config.gotemplate.values import NO_VALUE, CompareError, go_string, is_nil, truth

_UNSET = object()  # no value piped into a command


@dataclass(frozen=True)
class Limits:
    max_output_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64  # nested `template` calls
    max_steps: int = 2_000_000  # nodes and iterations walked, and items built by functions
    max_items: int = 100_000  # in one list or map a function returns


class FuncError(Exception):
    """A template function's refusal (`error calling NAME: ...`)."""


class _LoopSignal(Exception):
    def __init__(self, kind: str) -> None:
        self.kind = kind


def go_type(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}"}
    if isinstance(value, dict):
        return "map[string]interface {}"
    return names.get(type(value), type(value).__name__)


class Executor:
    def __init__(
        self, templates: dict[str, Template], functions: dict[str, Callable[..., Any]], limits: Limits = Limits()
    ) -> None:
        self.templates, self.functions, self.limits = templates, functions, limits
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.depth = 0
        self.vars: list[tuple[str, Any]] = []
        self.current: Template | None = None

    def run(self, name: str, data: Any) -> str:
        if name not in self.templates:
            raise TemplateError(f'template: no template "{name}" associated with template "{name}"', name)
        self.vars = [("$", data)]
        try:
            self.execute(self.templates[name], data, None)
        except RecursionError:
            raise TemplateError(f"template: {name}: nested too deeply (more than {self.limits.max_depth})") from None
        return "".join(self.out)

    def execute(self, template: Template, dot: Any, at: Node | None) -> None:
        if self.depth >= self.limits.max_depth:
            raise self.error(at, f"exceeded maximum template depth ({self.limits.max_depth})")
        saved_vars, saved_current = self.vars, self.current
        self.vars, self.current = [("$", dot)], template
        self.depth += 1
        try:
            self.walk(template.body, dot)
        finally:
            self.depth -= 1
            self.vars, self.current = saved_vars, saved_current

    def error(self, node: Node | None, message: str, source: str = "") -> TemplateError:
        template = self.current
        if template is None or node is None:
            return TemplateError(f"template: {message}")
        at = f" at <{source}>" if source else ""
        text = f'template: {template.file}:{node.line}:{node.col}: executing "{template.name}"{at}: {message}'
        return TemplateError(text, template.file, node.line, node.col)

    def emit(self, text: str, node: Node) -> None:
        self.size += len(text)
        if self.size > self.limits.max_output_bytes:
            raise self.error(node, f"output exceeds {self.limits.max_output_bytes} bytes")
        self.out.append(text)

    def step(self, node: Node) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise self.error(node, f"more than {self.limits.max_steps} steps: a loop this long is refused")

    def walk(self, nodes: list[Node], dot: Any) -> None:
        for node in nodes:
            self.step(node)
            if isinstance(node, Text):
                self.emit(node.text, node)
            elif isinstance(node, Action):
                value = self.pipe(node.pipe, dot, node)
                if not node.pipe.decl:
                    self.emit(go_string(value), node)
            elif isinstance(node, Branch):
                self.branch(node, dot)
            elif isinstance(node, Call):
                self.call(node, dot)
            elif isinstance(node, LoopControl):
                raise _LoopSignal(node.kind)

    def branch(self, node: Branch, dot: Any) -> None:
        mark = len(self.vars)
        try:
            if node.kind == "range":
                self.range(node, dot)
                return
            value = self.pipe(node.pipe, dot, node)
            if truth(value):
                self.walk(node.body, value if node.kind == "with" else dot)
            else:
                self.walk(node.otherwise, dot)
        finally:
            del self.vars[mark:]

    def range(self, node: Branch, dot: Any) -> None:
        value = self.pipe(Pipeline(node.pipe.line, node.pipe.col, node.pipe.commands), dot, node)
        pairs = self.iterate(value, node)
        if not pairs:
            self.walk(node.otherwise, dot)
            return
        for key, element in pairs:
            self.step(node)
            mark = len(self.vars)
            self.bind(node.pipe, key, element, node)
            try:
                self.walk(node.body, element)
            except _LoopSignal as signal:
                if signal.kind == "break":
                    break
            finally:
                del self.vars[mark:]

    def bind(self, pipe: Pipeline, key: Any, element: Any, node: Node) -> None:
        values = (element,) if len(pipe.decl) == 1 else (key, element)
        for name, value in zip(pipe.decl, values):
            if pipe.assign:
                self.assign(name, value, node)
            else:
                self.vars.append((name, value))

    def iterate(self, value: Any, node: Branch) -> list[tuple[Any, Any]]:
        if isinstance(value, (list, tuple)):
            return list(enumerate(value))
        if isinstance(value, dict):
            return [(key, value[key]) for key in sorted(value, key=_sort_key)]
        if isinstance(value, int) and not isinstance(value, bool):
            if value > self.limits.max_steps:
                raise self.error(node, f"range over {value}: more than {self.limits.max_steps} steps")
            return [(i, i) for i in range(value)]
        if is_nil(value):
            return []
        raise self.error(node, f"range can't iterate over {go_string(value)}", _short(node))

    def call(self, node: Call, dot: Any) -> None:
        template = self.templates.get(node.name)
        if template is None:
            raise self.error(node, f'no such template "{node.name}"', _short(node))
        value = self.pipe(node.pipe, dot, node) if node.pipe is not None else None
        self.execute(template, value, node)

    def pipe(self, pipe: Pipeline, dot: Any, action: Node) -> Any:
        value: Any = _UNSET
        for command in pipe.commands:
            value = self.command(command, dot, value, action)
        for name in pipe.decl:
            if pipe.assign:
                self.assign(name, value, action)
            else:
                self.vars.append((name, value))
        return value

    def assign(self, name: str, value: Any, node: Node) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.error(node, f"undefined variable: {name}")

    def lookup(self, name: str, node: Node) -> Any:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        raise self.error(node, f"undefined variable: {name}")

    def command(self, command: Command, dot: Any, final: Any, action: Node) -> Any:
        first, rest = command.args[0], command.args[1:]
        if isinstance(first, Function):
            return self.function(first, rest, final, dot, action)
        if rest or final is not _UNSET:
            what = ".".join(first.names) if isinstance(first, FieldChain) else _describe(first)
            raise self.error(first, f"can't give argument to non-function {what}", _source(action))
        return self.argument(first, dot, action)

    def argument(self, node: Node, dot: Any, action: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Variable):
            return self.lookup(node.name, node)
        if isinstance(node, FieldChain):
            receiver = dot if node.receiver is None else self.argument(node.receiver, dot, action)
            return self.fields(receiver, node, action)
        if isinstance(node, Function):
            return self.function(node, [], _UNSET, dot, action)
        if isinstance(node, Pipeline):
            return self.pipe(node, dot, action)
        raise self.error(node, f"can't evaluate {type(node).__name__}")

    def fields(self, value: Any, node: FieldChain, action: Node) -> Any:
        for name in node.names:
            if isinstance(value, dict):
                value = value.get(name, NO_VALUE)
                value = NO_VALUE if value is None else value
            elif is_nil(value):
                raise self.error(node, f"nil pointer evaluating interface {{}}.{name}", _source(action))
            else:
                raise self.error(node, f"can't evaluate field {name} in type {go_type(value)}", _source(action))
        return value

    def function(self, node: Function, arg_nodes: list[Node], final: Any, dot: Any, action: Node) -> Any:
        if node.name in ("and", "or"):
            return self.logic(node, arg_nodes, final, dot, action)
        args = [self.argument(arg, dot, action) for arg in arg_nodes]
        if final is not _UNSET:
            args.append(final)
        args = [None if arg is NIL else arg for arg in args]
        try:
            return self.bounded(self.functions[node.name](*args), node, action)
        except (FuncError, CompareError, ValueError) as exc:
            raise self.error(node, f"error calling {node.name}: {exc}", _source(action)) from None
        except TypeError:
            raise self.error(node, f"wrong number or type of args for {node.name}", _source(action)) from None

    def bounded(self, value: Any, node: Function, action: Node) -> Any:
        """A function's result, counted against the limits: a string as long as the whole output may be, a list or
        map of at most MAX_ITEMS; building it costs steps by its size (so growing a list one `append` at a time,
        which copies it each time, is bounded too)."""
        if isinstance(value, str):
            if len(value) > self.limits.max_output_bytes:
                raise self.error(
                    node, f"{node.name} made a string longer than {self.limits.max_output_bytes} bytes", _source(action)
                )
            self.steps += len(value) // 4096
        elif isinstance(value, (list, dict)):
            if len(value) > self.limits.max_items:
                raise self.error(node, f"{node.name} made more than {self.limits.max_items} items", _source(action))
            self.steps += len(value)
        if self.steps > self.limits.max_steps:
            raise self.error(node, f"more than {self.limits.max_steps} steps: building this much is refused")
        return value

    def logic(self, node: Function, arg_nodes: list[Node], final: Any, dot: Any, action: Node) -> Any:
        """`and`/`or` as Go 1.18+: arguments evaluated left to right, stopping at the first that decides."""
        if not arg_nodes and final is _UNSET:
            raise self.error(node, f"wrong number of args for {node.name}: want at least 1 got 0", _source(action))
        value: Any = None
        for arg in arg_nodes:
            value = self.argument(arg, dot, action)
            if truth(value) == (node.name == "or"):
                return value
        return value if final is _UNSET else final


def _sort_key(key: Any) -> tuple:
    return (0, key, "") if isinstance(key, (int, float)) and not isinstance(key, bool) else (1, 0, str(key))


def _describe(node: Node) -> str:
    if isinstance(node, Variable):
        return node.name
    if isinstance(node, Literal):
        return go_string(node.value)
    return type(node).__name__.lower()


def _source(node: Node) -> str:
    text = getattr(node, "source", "")
    return text.removeprefix("{{").removesuffix("}}").strip(" -\t\r\n")


def _short(node: Node) -> str:
    return _source(node)
