"""The one exception that means "the user asked for something impossible" (exit code 2).

The CLI prints its message as a single line, with no traceback; everything else is a bug.
"""


class UsageError(Exception):
    """Bad usage or bad input: a missing file, a glob that matches nothing, a malformed report."""


def one_line(exc: BaseException, limit: int | None = 300) -> str:
    """An exception's message on one line (its whitespace collapsed), cut at ``limit`` characters:
    how a one-line error or a pilot's reason quotes what a library raised."""
    text = " ".join(str(exc).split())
    return text if limit is None else text[:limit]
