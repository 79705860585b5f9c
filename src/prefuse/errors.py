"""The project's own error types: every failure a user can cause ends in one of these."""

from __future__ import annotations


class PrefuseError(Exception):
    """Base class for errors caused by user input (data, config, run directories)."""


class DataError(PrefuseError):
    """A data file is missing something, has the wrong shape, or cannot be read.

    The message always names the file and, where there is one, the field (key).
    """

    def __init__(self, path: object, message: str, field: str | None = None):
        self.path = str(path)
        self.field = field
        where = f"{self.path}" + (f" [{field}]" if field else "")
        super().__init__(f"{where}: {message}")


class ConfigError(PrefuseError):
    """A configuration value is invalid; the message names the field."""

    def __init__(self, field: str, message: str, source: object | None = None):
        self.field = field
        self.source = None if source is None else str(source)
        prefix = f"{self.source}: " if source is not None else ""
        super().__init__(f"{prefix}config field '{field}': {message}")


class OutputError(PrefuseError):
    """An output file or folder cannot be written; the message names it and says why."""

    def __init__(self, path: object, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class RunError(PrefuseError):
    """A run directory cannot be used as asked (it holds another run, a resume does not
    match, training diverged); the message names the directory and what to do."""


def warn(message: str) -> None:
    """Warn the user (``prefuse: warning: ...`` under the CLI), pointing at no source line:
    the warning is about their data or settings, not about prefuse's code."""
    import warnings

    warnings.warn_explicit(PrefuseWarning(message), PrefuseWarning, filename="prefuse",
                           lineno=0, module="prefuse")


class PrefuseWarning(UserWarning):
    """A warning about the user's data or settings."""
