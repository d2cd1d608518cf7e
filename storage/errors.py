"""The exceptions of the study service; each message says what to do next."""

from __future__ import annotations


class StorageError(Exception):
    """The study storage cannot be used as asked (bad URL, unreachable, uninitialised...)."""


class StudyNotFound(StorageError):
    """The named study does not exist in the storage."""


class StudyMismatch(StorageError):
    """A setting differs from the one stored with the study; the message names the field."""

    def __init__(self, field: str, stored: object, requested: object, hint: str = "") -> None:
        self.field = field
        self.stored = stored
        self.requested = requested
        message = (
            f"{field} differs from the study: stored {stored!r}, requested {requested!r}; "
            f"use the stored value or create a new study"
        )
        super().__init__(f"{message} ({hint})" if hint else message)
