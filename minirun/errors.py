"""The errors minirun reports to its user, each with the exit code docker would use.

Docker's convention (docker run --help, "Exit Status"): 125 the runtime itself failed,
126 the command was found but cannot be executed, 127 the command was not found; any other
code is the container's own, and 128+N means the container was killed by signal N.
"""

import os

RUNTIME_ERROR = 125
CANNOT_EXECUTE = 126
NOT_FOUND = 127


class MinirunError(Exception):
    """An error with a one-line message for the user and the exit code to leave with."""

    def __init__(self, message: str, code: int = RUNTIME_ERROR) -> None:
        super().__init__(message)
        self.code = code


class ImageNotFound(MinirunError):
    pass


class ContainerNotFound(MinirunError):
    pass


def exit_code(status: int) -> int:
    """A wait status as a shell reports it (wait(2)): the exit code, or 128 + the killing signal."""
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
