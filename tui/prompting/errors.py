"""The errors the prompting package reports to the user; each message is the explanation."""

from __future__ import annotations

from tui.i18n import _


class PromptingError(Exception):
    """Base of the errors this package reports to the user; the message is the explanation."""


class TemplateError(PromptingError, ValueError):
    """A bad template or bad values for it; ``line``/``column`` (1-based) point into the body."""

    def __init__(
        self, reason: str, *, line: int | None = None, column: int | None = None,
        variable: str | None = None, template: str | None = None,
    ) -> None:
        self.reason, self.line, self.column = reason, line, column
        self.variable, self.template = variable, template
        where = [f"template {template!r}"] if template else []
        if line is not None:
            where.append(_("line {line}, column {column}",
                           line=line, column=column) if column is not None else f"line {line}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


class TemplateNotFound(PromptingError, LookupError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else _("template not found")


class ReadOnlyTemplate(PromptingError):
    """Built-in templates cannot be changed or deleted (duplicate them instead)."""


class TemplateFileError(PromptingError):
    """A template file that cannot be read; names the file and, when known, the line."""

    def __init__(self, path: str, reason: str, *, line: int | None = None,
                 column: int | None = None) -> None:
        self.path, self.reason, self.line, self.column = path, reason, line, column
        where = path if line is None else f"{path}, line {line}"
        if line is not None and column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {reason}")
