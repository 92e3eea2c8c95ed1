"""The one error the template package raises: where (file, line, column) and what failed, worded as Go does."""

from __future__ import annotations


class TemplateError(Exception):
    def __init__(self, message: str, name: str = "", line: int = 0, col: int = 0) -> None:
        super().__init__(message)
        self.message, self.name, self.line, self.col = message, name, line, col
