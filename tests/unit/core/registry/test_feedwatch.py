"""FeedWatch and listing_complete: when the one KV mirror re-lists, without IO."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.feedwatch import (
    REGRESSED,
    STALLED,
    UNREACHABLE,
    Checked,
    CheckFailed,
    FeedWatch,
    Relisted,
    RelistStarted,
    Resync,
    StreamMark,
    listing_complete,
)

STALL = 1.0


def reasons(effects: list[Resync]) -> list[str]:
    return [e.reason for e in effects]


def test_a_listing_must_reach_the_streams_last_sequence_seen_before_it() -> None:
    mark = StreamMark(last_seq=40, messages=17)
    assert listing_complete(mark, keys=17, high_water=40)
    assert listing_complete(mark, keys=17, high_water=45)  # written meanwhile
    assert not listing_complete(mark, keys=0, high_water=0)  # "loaded 0 keys" (issue 19)
    assert not listing_complete(mark, keys=9, high_water=31)  # ended early


def test_an_empty_stream_lists_empty_and_a_hard_purged_tail_is_covered_by_the_count() -> None:
    assert listing_complete(StreamMark(last_seq=40, messages=0), keys=0, high_water=0)
    # the stream's last message was purged: no entry reaches 40, but every key was shown
    assert listing_complete(StreamMark(last_seq=40, messages=3), keys=3, high_water=38)


def test_a_watch_that_stays_caught_up_is_never_relisted() -> None:
    watch = FeedWatch(STALL)
    for t in range(100):
        assert watch.step(Checked(t * 0.5, last_seq=t, applied=t)) == []
    assert watch.caught_up_at == 49.5


def test_a_dead_watch_is_relisted_once_the_stall_threshold_passes() -> None:
    watch = FeedWatch(STALL)
    assert watch.step(Checked(0.0, 10, 10)) == []
    assert watch.step(Checked(0.5, 12, 10)) == []
    assert watch.step(Checked(1.0, 14, 10)) == []
    assert watch.step(Checked(1.5, 15, 10)) == [Resync(STALLED, 1.0, 5)]
    assert watch.step(Checked(2.0, 15, 10)) == []  # asked once, until a relist completes
    assert watch.step(Relisted(2.2)) == []
    assert watch.step(Checked(2.5, 16, 15)) == []  # the clock starts over


def test_a_lagging_but_live_watch_that_reaches_each_target_in_time_is_left_alone() -> None:
    watch = FeedWatch(STALL)
    applied = 0
    for step in range(40):
        now = step * 0.5
        last = step * 10 + 10
        assert watch.step(Checked(now, last, applied)) == []
        applied = last  # by the next check, what the stream held then has arrived


def test_partial_progress_does_not_reset_the_stall_clock() -> None:
    watch = FeedWatch(STALL)
    assert watch.step(Checked(0.0, 100, 50)) == []
    assert watch.step(Checked(0.5, 100, 70)) == []
    assert watch.step(Checked(1.0, 100, 99)) == [Resync(STALLED, 1.0, 1)]


def test_failed_status_calls_count_toward_the_stall_and_never_reset_it() -> None:
    watch = FeedWatch(STALL)
    assert watch.step(Checked(0.0, 10, 10)) == []
    assert watch.step(CheckFailed(0.5)) == []
    assert watch.step(CheckFailed(1.0)) == []
    # the stream answers again after the cut: the watch missed what was written
    assert watch.step(Checked(1.6, 20, 10)) == [Resync(STALLED, 1.1, 10)]


def test_a_stream_that_never_answers_is_unreachable_and_relisted() -> None:
    watch = FeedWatch(STALL)
    assert watch.step(Checked(0.0, 10, 10)) == []
    assert watch.step(CheckFailed(0.5)) == []
    assert watch.step(CheckFailed(1.5)) == [Resync(UNREACHABLE, 1.0, -1)]


def test_failures_then_a_caught_up_answer_need_no_relist() -> None:
    watch = FeedWatch(STALL)
    for t in (0.5, 1.0):
        assert watch.step(CheckFailed(t)) == []
    assert watch.step(Checked(3.0, 10, 10)) == []
    assert watch.step(Checked(3.5, 11, 10)) == []  # fresh clock


def test_one_low_answer_is_not_believed_a_lasting_one_is_a_regression() -> None:
    watch = FeedWatch(STALL)
    assert watch.step(Checked(0.0, 50, 50)) == []
    assert watch.step(Checked(0.5, 3, 50)) == []  # a replica behind, once
    assert watch.step(Checked(1.0, 50, 50)) == []
    assert watch.step(Checked(1.5, 3, 50)) == []
    assert reasons(watch.step(Checked(2.5, 3, 50))) == [REGRESSED]


def test_a_regression_is_asked_for_even_while_a_relist_runs() -> None:
    watch = FeedWatch(STALL)
    watch.step(RelistStarted(0.0))
    assert watch.step(Checked(0.5, 3, 50)) == []
    assert watch.step(CheckFailed(1.0)) == []  # suppressed: a relist is running
    assert reasons(watch.step(Checked(1.5, 3, 50))) == [REGRESSED]
    assert watch.step(Checked(3.0, 3, 50)) == []  # asked once


def test_a_running_relist_suppresses_stalls() -> None:
    watch = FeedWatch(STALL)
    watch.step(RelistStarted(0.0))
    for t in (0.5, 1.0, 1.5, 2.0):
        assert watch.step(CheckFailed(t)) == []
    assert watch.step(Relisted(2.5)) == []
    assert watch.caught_up_at == 2.5


checks = st.lists(st.tuples(st.floats(0.01, 0.6), st.sampled_from(["behind", "failed"])),
                  min_size=1, max_size=60)


@given(checks)
def test_a_dead_watch_is_always_caught_by_the_first_check_past_the_threshold(
        plan: list[tuple[float, str]]) -> None:
    """Whatever mix of failed and behind checks follows the last caught-up one, the first
    check at least ``stall_after`` after the clock started asks for a re-list."""
    watch = FeedWatch(STALL)
    watch.step(Checked(0.0, 10, 10))
    now, last, started = 0.0, 10, None
    asked: list[float] = []
    for dt, kind in plan:
        now += dt
        if kind == "failed":
            effects = watch.step(CheckFailed(now))
        else:
            last += 1
            effects = watch.step(Checked(now, last, 10))
        started = now if started is None else started
        asked += [now for _ in effects]
        if now - started >= STALL:
            assert asked, "no re-list asked for past the threshold"
            assert asked[0] == now or asked[0] - started >= STALL
            break
    assert len(asked) <= 1
    assert all(t - started >= STALL for t in asked if started is not None)


@given(st.lists(st.tuples(st.floats(0.01, 2.0), st.integers(0, 5)), max_size=60))
def test_a_feed_shown_caught_up_at_every_check_is_never_relisted(
        plan: list[tuple[float, int]]) -> None:
    watch = FeedWatch(STALL)
    now, last = 0.0, 0
    for dt, writes in plan:
        now += dt
        last += writes
        assert watch.step(Checked(now, last, last)) == []
