"""The one exception that means "the user asked for something impossible" (exit code 2).

The CLI prints its message as a single line, with no traceback; everything else is a bug.
"""


class UsageError(Exception):
    """Bad usage or bad input: a missing file, a glob that matches nothing, a malformed report."""
