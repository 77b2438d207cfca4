"""What every fault is: an ``inject()`` and the ``heal()`` that undoes it (both blocking),
with a ``kind`` and a ``target`` for the report. Networks, processes and proxies each
make their own (``chaos.proxyfaults``, ``chaos.netns.nemesis``, ``chaos.faults``)."""

from __future__ import annotations

from typing import Protocol


class Fault(Protocol):
    kind: str
    target: str

    def inject(self) -> None: ...

    def heal(self) -> None: ...
