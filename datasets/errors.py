"""The one exception raised for bad input data."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file breaks a rule.

    The message names the file, the line (1-based, header = line 1) or the id, the rule and the
    value received, so the user can fix the data without reading code.
    """
