"""User-facing errors: one paragraph that names the problem and the valid choices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DrlError(Exception):
    """An error caused by the user's input. The CLI prints it without a traceback."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' Did you mean X?' for close matches of ``word`` in ``choices``, or ''."""
    matches = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"
