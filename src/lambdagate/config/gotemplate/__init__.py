"""A faithful subset of Go's `text/template` (with Sprig's functions), for KrakenD's templated configs.

`TemplateSet` parses files once and renders one of them; see lex → parse → execute for the stages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lambdagate.config.gotemplate.errors import TemplateError
from lambdagate.config.gotemplate.execute import Executor, FuncError, Limits
from lambdagate.config.gotemplate.funcs import go_builtins
from lambdagate.config.gotemplate.parse import Template, parse
from lambdagate.config.gotemplate.sprig import sprig_functions

__all__ = ["FuncError", "Limits", "TemplateError", "TemplateSet"]


class TemplateSet:
    """Named templates (each file, and each `define`/`block` in them) sharing one function map."""

    def __init__(self, extra_functions: dict[str, Callable[..., Any]] | None = None, limits: Limits | None = None):
        self.functions = {**sprig_functions(), **(extra_functions or {}), **go_builtins()}
        self.templates: dict[str, Template] = {}
        self.limits = limits or Limits()

    def add(self, name: str, text: str) -> None:
        """Parse one file as template `name` (raises TemplateError with the file, line and column)."""
        parse(name, text, frozenset(self.functions), self.templates)

    def render(self, name: str, data: Any) -> str:
        return Executor(self.templates, self.functions, self.limits).run(name, data)
