"""User-facing errors: one clear line, exit status 2 (DESIGN.md, "Errors")."""


class KdbenchError(Exception):
    """Bad input from the user: a file, key, task, model or dataset that cannot be used.

    The message is a single line naming what and where; the CLI prints it without a traceback
    and exits with status 2.
    """


class KdbenchWarning(UserWarning):
    """Something skipped or doubtful that does not stop the command (e.g. an unreadable run record
    left out of a leaderboard); the CLI prints it as one ``kdbench: warning:`` line."""


class ModelHeadError(KdbenchError):
    """A model without the head a task needs: a plain checkpoint (or another task's model) where one
    fine-tuned for the task is needed. ``kdbench eval`` adds how to name the right ones."""
