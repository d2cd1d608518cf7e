"""The exceptions of the study service; each message says what to do next."""

from __future__ import annotations


class StorageError(Exception):
    """The study storage cannot be used as asked (bad URL, unreachable, uninitialised...)."""


class StudyNotFound(StorageError):
    """The named study does not exist in the storage."""


class StudyMismatch(StorageError):
    """A setting differs from the one stored with the study; the message names the field."""

    def __init__(
        self,
        field: str,
        stored: object,
        requested: object,
        hint: str = "",
        *,
        message: str | None = None,
    ) -> None:
        """``message`` replaces the generic one where the values say too little on their own."""
        self.field = field
        self.stored = stored
        self.requested = requested
        if message is None:
            message = (
                f"{field} differs from the study: stored {stored!r}, requested {requested!r}; "
                f"use the stored value or create a new study"
            )
            message = f"{message} ({hint})" if hint else message
        super().__init__(message)
