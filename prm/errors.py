"""Errors that the CLI turns into one clear line and exit code 2 (no traceback)."""

from __future__ import annotations


class PrmError(Exception):
    """A user-facing error: bad input, bad config, missing resource. Printed without a traceback."""

    exit_code = 2


class InputError(PrmError):
    """A problem with one line (or one record) of an input file: names the file, the line and the field."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str):
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {what}{self.message}"


class ConfigError(PrmError):
    """An unknown key, a wrong type or a bad value in a config file or a key=value override."""
