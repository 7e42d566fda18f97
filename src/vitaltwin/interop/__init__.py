"""Adapters between outside formats and the canonical record: they only translate.

Every reader returns a :class:`vitaltwin.data.Record`; none stores anything (the store and the
service do). ``read_any`` dispatches by file name or content."""

from vitaltwin.interop._errors import ReadError
from vitaltwin.interop._readers import (
    READERS,
    Reader,
    ReadOptions,
    input_files,
    read_any,
    read_chunks,
    reader_for,
    register,
)
from vitaltwin.interop._records import json_object, rejection

__all__ = [
    "READERS",
    "ReadError",
    "ReadOptions",
    "Reader",
    "input_files",
    "json_object",
    "read_any",
    "read_chunks",
    "reader_for",
    "register",
    "rejection",
]
