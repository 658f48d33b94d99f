"""What each preprocessing or split step kept and removed.

Every loader in ``grurec.datasets`` and every split in ``grurec.splits``
returns a ``Report``: one ``Step`` per step, with the events, sessions (or
users) and distinct items left after it and how many of each it removed.
Steps are also logged at INFO level on the ``grurec.datasets`` logger.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Iterator, List, Tuple

log = logging.getLogger("grurec.datasets")

Counts = Tuple[int, int, int]  # events, sessions, items


@dataclass(frozen=True)
class Step:
    step: str  # what the step did
    part: str  # "all", "train", "test", "valid", ...
    events: int  # left after the step
    sessions: int
    items: int
    removed_events: int
    removed_sessions: int
    removed_items: int


class Report:
    """An ordered list of ``Step``s; ``str(report)`` is a table."""

    def __init__(self, name: str = ""):
        self.name = name
        self.steps: List[Step] = []

    def add(self, step: str, part: str, before: Counts, after: Counts) -> Step:
        s = Step(step, part, *after, *(max(b - a, 0) for b, a in zip(before, after)))
        self.steps.append(s)
        log.info("%s%s [%s]: %d events, %d sessions, %d items left (removed %d / %d / %d)",
                 f"{self.name}: " if self.name else "", step, part, *after,
                 s.removed_events, s.removed_sessions, s.removed_items)
        return s

    def extend(self, other: "Report", prefix: str = "") -> None:
        for s in other.steps:
            self.steps.append(Step(prefix + s.step, *list(asdict(s).values())[1:]))

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i) -> Step:
        return self.steps[i]

    def find(self, text: str, part: str | None = None) -> Step:
        """The first step whose description contains ``text`` (and of ``part``)."""
        for s in self.steps:
            if text in s.step and (part is None or s.part == part):
                return s
        raise KeyError(f"no step matching {text!r}" + (f" in part {part!r}" if part else ""))

    def to_dicts(self) -> list:
        return [asdict(s) for s in self.steps]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.to_dicts())

    def __str__(self) -> str:
        head = ("step", "part", "events", "sessions", "items", "-events", "-sessions", "-items")
        rows = [head] + [(s.step, s.part) + tuple(f"{v:,}" for v in (
            s.events, s.sessions, s.items, s.removed_events, s.removed_sessions,
            s.removed_items)) for s in self.steps]
        w = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [("  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(r)))
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        return (f"{self.name}\n" if self.name else "") + "\n".join(lines)

    __repr__ = __str__


def counts(sd) -> Counts:
    """(events, sessions, distinct items) of a SessionData."""
    return (sd.n_events, sd.n_sessions, sd.n_used_items())


def frame_counts(df, session_col: str = "SessionId", item_col: str = "ItemId") -> Counts:
    """(events, sessions, distinct items) of an event DataFrame."""
    return (len(df), int(df[session_col].nunique()), int(df[item_col].nunique()))
