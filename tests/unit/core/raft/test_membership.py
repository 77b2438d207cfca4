"""Membership changes (single-server, learners first) and leadership transfer, on the
lossless simulated network with the invariant checker running after every step."""

from __future__ import annotations

from broker_agents.core.errors import ErrorCode
from broker_agents.core.raft import (
    ChangeMembers,
    Failed,
    NotLeader,
    ProposalResult,
    Propose,
    Role,
    TransferLeadership,
)
from broker_agents.core.raft.messages import TimeoutNow, VoteRequest
from tests.unit.core.raft.cluster import Cluster


def put(key: str, value: int) -> dict[str, object]:
    return {"op": "put", "key": key, "value": value}


def elected(n: int = 3, seed: int = 1, **cfg: object) -> tuple[Cluster, str]:
    c = Cluster(n, seed, **cfg)
    c.settle()
    lead = c.leader()
    assert lead is not None
    return c, lead


def answer(c: Cluster, rid: str, ticks: int = 200) -> object:
    """Run until the request is answered (fails the test after ``ticks``)."""
    for _ in range(ticks):
        if c.admin[rid] is not None:
            return c.admin[rid]
        c.run(1)
    raise AssertionError(f"{rid} was not answered in {ticks} ticks")


def change(c: Cluster, lead: str, action: str, member: str, rid: str) -> object:
    c.request(lead, ChangeMembers(rid, action, member))
    return answer(c, rid)


def test_add_a_member_as_learner_then_voter() -> None:
    c, lead = elected()
    for k in range(5):
        c.write(lead, put("x", k))
    c.run(3)
    c.add_node("m3")
    assert c.node("m3").voters == frozenset(c.bootstrap)  # a joiner: not a voter
    got = change(c, lead, "add", "m3", "add-1")
    assert isinstance(got, ProposalResult)
    assert got.result == {"voters": ["m0", "m1", "m2", "m3"], "learners": []}
    c.settle()
    assert all(c.node(m).voters == {"m0", "m1", "m2", "m3"} for m in c.ids)
    assert c.node(lead).quorum == 3
    assert c.node("m3").applier.sm.get("x") == 4
    # the learner phase came first: its CONFIG precedes the voter one in every log
    configs = [m for _i, m in c.node("m3").log.configs.entries]
    assert [sorted(m.learners) for m in configs] == [["m3"], []]
    # the grown group commits with one member down
    c.crash(next(m for m in c.ids if m != c.leader()))
    rid = c.write(c.leader() or "", put("y", 1))
    c.run(5)
    assert rid in c.check.acked


def test_remove_a_follower() -> None:
    c, lead = elected(5)
    gone = next(m for m in c.ids if m != lead)
    got = change(c, lead, "remove", gone, "rm-1")
    assert isinstance(got, ProposalResult)
    assert gone not in got.result["voters"]
    c.crash(gone)
    assert c.node(lead).quorum == 3  # of four voters
    c.crash(next(m for m in c.live() if m != lead))
    rid = c.write(lead, put("x", 1))  # three of the four voters remain: enough
    c.run(5)
    assert rid in c.check.acked


def test_remove_the_leader_hands_over_and_steps_down() -> None:
    c, lead = elected()
    got = change(c, lead, "remove", lead, "rm-lead")
    assert isinstance(got, ProposalResult) and lead not in got.result["voters"]
    c.run(30)
    new = c.leader()
    assert new is not None and new != lead
    assert c.node(lead).role == Role.FOLLOWER
    elections = {m: c.node(m).elections for m in c.ids}
    c.run(60)  # the removed member never campaigns, nor disrupts the new leader
    assert c.node(lead).elections == elections[lead]
    assert c.leader() == new
    rid = c.write(new, put("x", 1))
    c.run(3)
    assert rid in c.check.acked


def test_replace_a_dead_member() -> None:
    c, lead = elected()
    dead = next(m for m in c.ids if m != lead)
    c.crash(dead)
    c.add_node("m9")
    assert isinstance(change(c, lead, "add", "m9", "r-add"), ProposalResult)
    got = change(c, lead, "remove", dead, "r-rm")
    assert isinstance(got, ProposalResult)
    assert sorted(got.result["voters"]) == sorted((set(c.bootstrap) - {dead}) | {"m9"})
    other = next(m for m in c.bootstrap if m not in (lead, dead))
    c.crash(other)  # with the dead member replaced, two of three still commit
    rid = c.write(lead, put("x", 1))
    c.run(5)
    assert rid in c.check.acked


def test_a_learner_far_behind_is_caught_up_by_snapshot() -> None:
    c, lead = elected(snapshot_threshold=8)
    for k in range(30):
        c.write(lead, put("x", k))
        c.run(1)
    assert c.node(lead).log.base_index > 0  # compacted: a joiner needs the snapshot
    c.add_node("m3")
    got = change(c, lead, "add", "m3", "add-snap")
    assert isinstance(got, ProposalResult)
    c.settle()
    assert c.storage["m3"].snapshot is not None
    assert c.storage["m3"].snapshot.membership is not None
    assert c.node("m3").applier.sm.get("x") == 29
    assert "m3" in c.node("m3").voters


def test_a_learner_that_never_catches_up_is_withdrawn() -> None:
    c, lead = elected(catchup_rounds=2)
    rid = c.request(lead, ChangeMembers("add-dead", "add", "m7"))  # m7 never starts
    got = answer(c, rid)
    assert isinstance(got, Failed) and got.code == ErrorCode.TIMEOUT
    c.run(10)
    assert c.node(lead).membership.members == frozenset(c.bootstrap)


def test_changes_are_refused_while_one_is_pending_and_for_bad_requests() -> None:
    c, lead = elected()
    c.add_node("m3")
    c.request(lead, ChangeMembers("a1", "add", "m3"))
    c.request(lead, ChangeMembers("a2", "remove", "m1"))
    got = c.admin["a2"]
    assert isinstance(got, Failed) and got.code == ErrorCode.CONFLICT
    assert isinstance(answer(c, "a1"), ProposalResult)
    for rid, action, member in (("b1", "add", "m3"), ("b2", "remove", "zz"),
                                ("b3", "move", "m3")):
        c.request(lead, ChangeMembers(rid, action, member))
        got = c.admin[rid]
        assert isinstance(got, Failed) and got.code == ErrorCode.BAD_REQUEST, rid
    follower = next(m for m in c.ids if m != lead)
    c.request(follower, ChangeMembers("f1", "remove", "m3"))
    assert c.admin["f1"] == NotLeader("f1", lead)


def test_the_last_voter_cannot_be_removed() -> None:
    c, lead = elected(1)
    c.request(lead, ChangeMembers("last", "remove", lead))
    got = c.admin["last"]
    assert isinstance(got, Failed) and got.code == ErrorCode.BAD_REQUEST


def test_a_new_leader_refuses_changes_until_it_committed_in_its_term() -> None:
    c, lead = elected()
    term = c.node(lead).term
    c.crash(lead)
    for _ in range(200):  # one message at a time: catch the new leader before its no-op
        c.net.advance(1)
        c.tick_all()
        while c.step_one():
            new = c.leader()
            if new is not None and c.node(new).term > term:
                core = c.node(new)
                assert core.log.term_at(core.commit) != core.term  # its no-op is pending
                c.request(new, ChangeMembers("early", "remove", lead))
                got = c.admin["early"]
                assert isinstance(got, Failed) and got.code == ErrorCode.CONFLICT
                c.run(3)  # once the no-op commits, the same change is taken
                assert isinstance(change(c, new, "remove", lead, "later"), ProposalResult)
                return
    raise AssertionError("no new leader")


def test_transfer_moves_leadership_to_the_target() -> None:
    c, lead = elected()
    target = next(m for m in c.ids if m != lead)
    term = c.node(lead).term
    got = change_transfer(c, lead, target)
    assert got == ProposalResult("t1", 0, {"leader": target})
    c.run(3)
    assert c.leader() == target and c.node(target).term == term + 1
    rid = c.write(target, put("x", 1))
    c.run(3)
    assert rid in c.check.acked


def change_transfer(c: Cluster, lead: str, target: str | None, rid: str = "t1") -> object:
    c.request(lead, TransferLeadership(rid, target))
    return answer(c, rid, ticks=60)


def test_transfer_to_the_most_up_to_date_voter_by_default() -> None:
    c, lead = elected(5)
    got = change_transfer(c, lead, None)
    assert isinstance(got, ProposalResult)
    assert got.result["leader"] != lead and c.leader() == got.result["leader"]


def test_transfer_votes_are_granted_inside_the_leader_lease() -> None:
    """A transfer's election does not wait out the lease (pre-vote would refuse it)."""
    c, lead = elected()
    target = next(m for m in c.ids if m != lead)
    other = next(m for m in c.ids if m not in (lead, target))
    core = c.node(other)
    term = core.term
    core.step(VoteRequest(term + 1, target, other, core.log.last_index, core.log.last_term,
                          transfer=True))
    ready = core.ready()
    assert any(getattr(m, "granted", False) for m in ready.messages)
    core2 = c.node(lead)
    core2.step(VoteRequest(term + 1, target, lead, core2.log.last_index,
                           core2.log.last_term))  # no transfer flag: the lease holds
    assert core2.role == Role.LEADER


def test_transfer_to_a_target_that_is_behind_catches_it_up_first() -> None:
    c, lead = elected()
    target = next(m for m in c.ids if m != lead)
    c.freeze(target, 3)
    for k in range(10):
        c.write(lead, put("x", k))
    c.request(lead, TransferLeadership("t-behind", target))
    assert c.node(target).log.last_index < c.node(lead).log.last_index
    # no TimeoutNow while the target lacks part of the log
    assert not any(isinstance(e.msg, TimeoutNow) for e in c.net.in_flight)
    got = answer(c, "t-behind", ticks=60)
    assert got == ProposalResult("t-behind", 0, {"leader": target})
    c.settle()
    assert c.node(target).applier.sm.get("x") == 9


def test_transfer_times_out_and_proposals_resume() -> None:
    c, lead = elected()
    target = next(m for m in c.ids if m != lead)
    c.crash(target)
    c.request(lead, TransferLeadership("t-dead", target))
    assert c.node(lead).transferring == target
    got = answer(c, "t-dead", ticks=60)
    assert isinstance(got, Failed) and got.code == ErrorCode.TIMEOUT
    assert c.node(lead).transferring is None and c.leader() == lead
    rid = c.write(lead, put("x", 1))
    c.run(3)
    assert rid in c.check.acked


def test_proposals_during_a_transfer_are_held_then_sent_to_whoever_leads() -> None:
    """Held until the transfer ends, then answered ``NotLeader`` naming who leads: the
    target once it won (the client goes straight there), us again when it timed out."""
    c, lead = elected()
    target = next(m for m in c.ids if m != lead)
    c.crash(target)  # keep the transfer pending
    c.request(lead, TransferLeadership("t2", target))
    core = c.node(lead)
    core.step(Propose(put("x", 1), "during"))
    assert not [r for r in core.ready().replies if r.request_id == "during"]  # held
    c.request(lead, TransferLeadership("t5", None))  # one transfer at a time
    got = c.admin["t5"]
    assert isinstance(got, Failed) and got.code == ErrorCode.CONFLICT
    c.request(lead, ChangeMembers("c1", "remove", target))  # nor a change meanwhile
    assert c.admin["c1"] == NotLeader("c1", target)
    assert isinstance(answer(c, "t2"), Failed)  # the target is down: it timed out
    assert (lead, NotLeader("during", lead)) in c.replies  # ask us again
    # a transfer that succeeds sends what it held to the new leader
    c.restart(target)
    c.settle()
    lead = c.leader() or ""
    target = next(m for m in c.ids if m != lead)
    c.request(lead, TransferLeadership("t6", target))
    c.node(lead).step(Propose(put("x", 2), "during-2"))
    assert isinstance(answer(c, "t6"), ProposalResult)
    assert (lead, NotLeader("during-2", target)) in c.replies


def test_bad_transfer_targets_are_refused() -> None:
    c, lead = elected()
    for rid, bad in (("t3", lead), ("t4", "nobody")):
        c.request(lead, TransferLeadership(rid, bad))
        got = c.admin[rid]
        assert isinstance(got, Failed) and got.code == ErrorCode.BAD_REQUEST, rid


def test_timeout_now_from_a_member_that_is_not_our_leader_is_refused() -> None:
    c, lead = elected()
    follower, other = [m for m in c.ids if m != lead]
    core = c.node(follower)
    core.step(TimeoutNow(core.term, other, follower))
    ready = core.ready()
    assert [r.reason.value for r in ready.refused] == ["not_leader"]
    assert core.role == Role.FOLLOWER and c.leader() == lead


def test_a_transfer_moves_leadership_faster_than_an_election_timeout() -> None:
    """Logical time: from the request to the new leader's first commit takes fewer ticks
    than the shortest election timeout a crash would cost (election_ticks)."""
    c, lead = elected()
    target = next(m for m in c.ids if m != lead)
    start = c.net.now
    c.request(lead, TransferLeadership("fast", target))
    rid = None
    for _ in range(30):
        c.run(1)
        if rid is None and c.leader() == target:
            rid = c.write(target, put("x", 1))
        if rid is not None and rid in c.check.acked:
            break
    assert rid is not None and rid in c.check.acked
    assert c.net.now - start < c.cfg_kw["election_ticks"]


def test_a_member_whose_log_is_behind_follows_a_leader_added_after_it() -> None:
    """m2 was down while m3 joined and took over: its log still holds the bootstrap
    configuration, without m3, yet it must follow m3 (it learns the term from m0/m1)."""
    c, lead = elected(seed=3)
    behind = next(m for m in c.ids if m != lead)
    c.crash(behind)
    c.add_node("m3")
    assert isinstance(change(c, lead, "add", "m3", "add"), ProposalResult)
    c.request(lead, TransferLeadership("to-m3", "m3"))
    assert answer(c, "to-m3") == ProposalResult("to-m3", 0, {"leader": "m3"})
    c.run(5)
    assert c.leader() == "m3"
    c.restart(behind)
    assert "m3" not in c.node(behind).membership.members
    c.settle()
    assert c.leader() == "m3"
    assert c.node(behind).applied == c.node("m3").commit
    assert "m3" in c.node(behind).voters


def test_a_learner_is_promoted_under_steady_load() -> None:
    """Catch-up runs in rounds: a learner that trails the commit index by a round's worth
    of entries (writes keep coming, its messages are slower) is still promoted."""
    c, lead = elected()
    c.add_node("m3")
    c.net.max_delay = 2
    c.request(lead, ChangeMembers("busy-add", "add", "m3"))
    k = 0
    for _ in range(200):
        for _w in range(3):
            k += 1
            c.write(lead, put("x", k))
        c.run(1)
        if c.admin["busy-add"] is not None:
            break
    got = c.admin["busy-add"]
    assert isinstance(got, ProposalResult), got
    assert "m3" in got.result["voters"]
