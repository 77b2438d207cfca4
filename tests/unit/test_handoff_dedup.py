"""``ArrivalDedup``: during a handover each message is handled once by the new host, however
its direct and forwarded copies interleave (``broker_agents.handoff``)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg

from broker_agents.handoff import HEADER, ArrivalDedup


def copy(n: int, forwarded: bool, reply: str = "_INBOX.c.1") -> Msg:
    headers = {HEADER: "node-1"} if forwarded else None
    return Msg(_client=None, subject="ba.agent.a", reply=reply,  # type: ignore[arg-type]
               data=b"%d" % n, headers=headers)


@st.composite
def arrivals(draw: Any) -> tuple[int, list[tuple[int, bool]]]:
    """Messages 0..n-1, each arriving direct, forwarded or both, in any order."""
    n = draw(st.integers(1, 30))
    copies: list[tuple[int, bool]] = []
    for i in range(n):
        paths = draw(st.sampled_from([(False,), (True,), (False, True)]))
        copies += [(i, forwarded) for forwarded in paths]
    return n, draw(st.permutations(copies))


@given(arrivals())
def test_each_message_is_handled_once_whatever_the_order_of_its_copies(
        case: tuple[int, list[tuple[int, bool]]]) -> None:
    n, copies = case
    dedup = ArrivalDedup(window=60)
    handled = [i for i, forwarded in copies if not dedup.second_copy(copy(i, forwarded))]
    assert sorted(handled) == list(range(n))


def test_a_clients_own_resend_is_not_taken_for_a_second_copy() -> None:
    dedup = ArrivalDedup(window=60)
    assert not dedup.second_copy(copy(1, False))
    assert not dedup.second_copy(copy(1, False))  # the runtime's reply cache answers it
    assert dedup.second_copy(copy(1, True))


def test_the_same_bytes_to_another_reply_subject_are_another_message() -> None:
    dedup = ArrivalDedup(window=60)
    assert not dedup.second_copy(copy(1, False, "_INBOX.c.1"))
    assert not dedup.second_copy(copy(1, True, "_INBOX.c.2"))


def test_memory_is_bounded_and_the_window_ends() -> None:
    dedup = ArrivalDedup(window=0, max_entries=3)
    for i in range(10):
        dedup.second_copy(copy(i, False))
    assert not dedup.second_copy(copy(0, True))  # forgotten: the oldest go first
    assert dedup.second_copy(copy(9, True))
    assert dedup.expired()
