"""Errors that carry a one-line, actionable message for the user (printed without a traceback)."""


class AylaError(RuntimeError):
    """Base of the errors the command line reports as one line."""


class ConfigError(AylaError, ValueError):
    """A configuration value is out of range or of the wrong kind."""


class DataError(AylaError):
    """A data set is missing, unreadable or malformed."""


class OutputError(AylaError):
    """Results cannot be written (unwritable folder, disk full)."""
