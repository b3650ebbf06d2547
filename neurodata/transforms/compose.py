"""Chaining transforms."""
from __future__ import annotations

from dataclasses import dataclass, field

from neurodata.transforms._base import Transform


@dataclass
class Compose(Transform):
    """Apply ``transforms`` in order (any callables; neurodata transforms also work on batches).

    Unlike tonic's ``Compose``, an empty sample still goes through every
    transform, so representations return their documented empty shapes.
    """

    transforms: list = field(default_factory=list)

    @property
    def deterministic(self) -> bool:
        """True when every member is deterministic."""
        return all(getattr(t, "deterministic", False) for t in self.transforms)

    def params(self) -> dict:
        return {"name": "Compose",
                "transforms": [t.params() if hasattr(t, "params") else {"name": repr(t)}
                               for t in self.transforms]}

    def __call__(self, events):
        for t in self.transforms:
            events = t(events)
        return events

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i):
        return self.transforms[i]


__all__ = ["Compose"]
