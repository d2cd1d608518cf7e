"""The reports' user-facing error (kept free of plotting imports: the CLI loads it at start)."""

from __future__ import annotations


class ReportError(RuntimeError):
    """A report cannot be written; the message names the folder or the missing tool."""
