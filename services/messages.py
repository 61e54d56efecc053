"""Marking user-facing text in services without depending on any UI.

Services never format text for a person. When a rule rejects input they raise or return a
`Problem`: a message id marked with `N_` (so `pybabel extract -k N_` collects it) plus named
parameters. The front end (bot, CLI, API) translates the id into the user's language and fills it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def N_(message: str) -> str:
    """Mark a message id for extraction; it is translated later, where the user's language is known."""
    return message


@dataclass(frozen=True)
class Problem:
    """A reason a value or an action was refused: a message id and its parameters."""

    message: str
    params: dict[str, Any] = field(default_factory=dict)

    def render(self, gettext) -> str:
        return gettext(self.message).format(**self.params)


class DomainError(Exception):
    """A rule refused an action. Carries a `Problem` so every front end can say why, localized."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message.format(**params) if params else message)
        self.problem = Problem(message, params)
