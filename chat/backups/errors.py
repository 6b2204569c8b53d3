"""The one error every backup and restore step raises."""


class BackupError(Exception):
    """A backup or restore step failed; the message says which and why."""
