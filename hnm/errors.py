"""The one exception family hnm raises for user mistakes and bad input.

Every message says what went wrong and where (file, line, field) and, where it can, what to do about it.
Internal invariants use `assert`, never these.
"""


class HnmError(Exception):
    """A problem with the user's input, files or environment that hnm can describe."""


class InputError(HnmError, ValueError):
    """A malformed input file: the message names the file, the line and the field."""


class WeightsError(HnmError):
    """Model weights that cannot be found, fetched or verified."""
