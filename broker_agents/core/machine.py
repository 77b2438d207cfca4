"""The one face every protocol core shows: events in, effects out.

Every core is driven the same way, whatever its protocol (etcd-io/raft's ``Step``, h11's
``send``/``next_event``):

- **events in**: a message from a peer, a proposal from a client, or a logical ``Tick``;
  each core names its own event classes (frozen records) and takes them through one
  ``step`` entry point;
- **effects out**: ``step`` returns the records the driver must carry out, in order
  (persist before send where that matters). Nothing else in a core is public API.

Three forms of the same shape exist, chosen by where a protocol's state lives and how
its effects are best batched:

- ``Machine``: the core object holds the state (PBFT replica and client, barrier,
  hierarchical planner, reaper): ``effects = core.step(event)``;
- ``Transition``: the state is a value stored elsewhere, in a KV record that survives the
  process (auctions and their settlement): ``state, effects = step(state, event)``;
- batched (Raft, etcd's ``Step`` then ``Ready``): ``core.step(event)`` for everything that
  arrived in one event-loop turn, then one ``core.ready()`` hands out the effects of all
  of them, so one fsync and one publish per peer carry many entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

EventT_contra = TypeVar("EventT_contra", contravariant=True)
EffectT_co = TypeVar("EffectT_co", covariant=True)
StateT = TypeVar("StateT")
EffectT = TypeVar("EffectT")


@dataclass(frozen=True, slots=True)
class Tick:
    """Logical time passed: ``now`` is the driver's clock reading in the core's unit
    (ticks, milliseconds or seconds, as the core documents); cores never read a clock."""

    now: float = 0.0


class Machine(Protocol[EventT_contra, EffectT_co]):
    """A core that holds its own state."""

    def step(self, event: EventT_contra) -> EffectT_co: ...


@dataclass(frozen=True, slots=True)
class Transition(Generic[StateT, EffectT]):
    """What a value-state core returns: the next state and the effects that go with it."""

    state: StateT
    effects: Sequence[EffectT]
