"""pypdk's errors: every one names the problem and the fix.

`cli.py` turns a `PypdkError` into one line on stderr and exit status 2; the
Python API raises them as ordinary exceptions. Subclasses also derive from the
builtin exception a Python caller would expect (`ValueError` for bad input,
`OSError`-like conditions stay `PypdkError` with the errno text in `problem`).
"""


class PypdkError(Exception):
    """Base class: `problem` says what is wrong, `fix` what to do about it."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        """The one-line form: 'problem: fix' (or just the problem)."""
        return f"{self.problem}; {self.fix}" if self.fix else self.problem


class UsageError(PypdkError, ValueError):
    """A bad option, core list, devargs string or config value."""


class ResourceError(PypdkError):
    """Something the machine lacks: hugepages, an interface, a permission."""


class StateError(PypdkError, RuntimeError):
    """An operation in the wrong state (EAL not initialised, port not started...)."""
