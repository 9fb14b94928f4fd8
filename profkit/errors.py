"""profkit's exceptions: the CLI prints each as one `Error: ...` line (exit code 2)."""


class ProfkitError(Exception):
    """A problem the user can fix; the message says what to do."""


class RunError(ProfkitError):
    """`profkit run` cannot start or finish this workload."""
