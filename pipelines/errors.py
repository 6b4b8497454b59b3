"""The one exception type a user sees: it names the file, the place in it, and the reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """Something wrong with one input file; ``where`` locates it inside the file."""

    file: str
    reason: str
    where: str = ""

    def __str__(self) -> str:
        place = f"{self.file}:{self.where}" if self.where else self.file
        return f"{place}: {self.reason}"

    def as_dict(self) -> dict:
        return {"file": self.file, "where": self.where, "reason": self.reason}


class OdliteError(Exception):
    """A failure caused by the user's input or options; the CLI prints it and exits non-zero."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = problems or []

    @classmethod
    def at(cls, file: str | Path, reason: str, where: str = "") -> OdliteError:
        problem = Problem(str(file), reason, where)
        return cls(str(problem), [problem])

    def __str__(self) -> str:
        head = self.args[0]
        if not self.problems or [head] == [str(p) for p in self.problems]:
            return head
        return head + "\n" + "\n".join(f"  {p}" for p in self.problems)
