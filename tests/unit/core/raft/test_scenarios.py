"""Scenario tests in the style of the Raft paper's figures, on a lossless simulated network
(the invariant checker of ``cluster.py`` runs after every step here too)."""

from __future__ import annotations

import random

from broker_agents.core.raft import (
    Entry,
    HardState,
    InitialState,
    NotLeader,
    ProposalResult,
    Propose,
    RaftConfig,
    RaftCore,
    Read,
    ReadResult,
    Redirect,
    Role,
    Tick,
)
from broker_agents.core.raft.kvstore import KVStateMachine
from broker_agents.core.raft.messages import (
    AppendRequest,
    AppendResponse,
    ForwardProposals,
    InstallSnapshot,
    VoteRequest,
    VoteResponse,
)
from broker_agents.core.raft.raft import MAX_RELAYS
from tests.unit.core.raft.cluster import Cluster


def put(key: str, value: int) -> dict[str, object]:
    return {"op": "put", "key": key, "value": value}


def elected(n: int = 3, seed: int = 1, **cfg: object) -> tuple[Cluster, str]:
    c = Cluster(n, seed, **cfg)
    c.settle()
    lead = c.leader()
    assert lead is not None
    return c, lead


def test_a_leader_is_elected_and_commits_on_every_member() -> None:
    c, lead = elected()
    rid = c.write(lead, put("x", 1))
    c.run(3)
    assert rid in c.check.acked
    assert all(c.node(m).applier.sm.get("x") == 1 for m in c.ids)


def test_stale_leader_in_minority_partition_cannot_commit() -> None:
    c, old = elected(5)
    others = [m for m in c.ids if m != old]
    c.net.partition({old, others[0]}, set(others[1:]))
    old_commit = c.node(old).commit
    stale = c.write(old, put("x", "stale"))
    c.run(4)
    assert c.node(old).commit == old_commit  # two of five cannot commit
    assert stale not in c.check.acked
    c.run(60)  # the majority side elects a new leader and commits
    new = c.leader()
    assert new in others[1:]
    fresh = c.write(new, put("x", "fresh"))
    c.run(3)
    assert fresh in c.check.acked
    c.net.heal()
    c.settle()
    assert c.node(old).role == Role.FOLLOWER
    assert c.node(old).applier.sm.get("x") == "fresh"
    assert stale not in c.check.acked  # overwritten, never acknowledged


def test_check_quorum_makes_an_isolated_leader_step_down() -> None:
    c, lead = elected(3)
    c.net.partition({lead}, set(c.ids) - {lead})
    c.run(2 * c.cfg_kw["election_ticks"] + 1)
    assert c.node(lead).role == Role.FOLLOWER
    assert c.node(lead).leader is None


def test_isolated_leader_does_not_serve_a_read_it_cannot_confirm() -> None:
    c, lead = elected(3)
    c.net.partition({lead}, set(c.ids) - {lead})
    rid = c.read(lead, "x")
    c.run(2 * c.cfg_kw["election_ticks"] + 1)
    answers = [r for _m, r in c.replies if r.request_id == rid]
    assert answers and isinstance(answers[0], NotLeader)
    assert not any(isinstance(r, ReadResult) for r in answers)


def test_pre_vote_stops_a_rejoining_member_from_disrupting_the_leader() -> None:
    c, lead = elected(3)
    loner = next(m for m in c.ids if m != lead)
    term = c.node(lead).term
    c.net.partition({loner}, set(c.ids) - {loner})
    c.run(100)  # many election timeouts in isolation
    assert c.node(loner).term == term  # pre-votes failed, so its term never moved
    c.net.heal()
    c.run(30)
    assert c.leader() == lead and c.node(lead).term == term


def test_without_pre_vote_a_rejoining_member_does_disrupt() -> None:
    """The control for the test above: the scenario really is disruptive."""
    c, lead = elected(3, pre_vote=False, check_quorum=False)
    loner = next(m for m in c.ids if m != lead)
    term = c.node(lead).term
    c.net.partition({loner}, set(c.ids) - {loner})
    c.run(100)
    assert c.node(loner).term > term
    c.net.heal()
    c.run(30)
    assert c.node(c.leader() or lead).term > term


def make_leader(core: RaftCore) -> None:
    """Drive one core through pre-vote and vote with hand-made granted responses."""
    while core.role == Role.FOLLOWER:
        core.step(Tick())
    for pre in (True, False):
        reqs = [m for m in core.ready().messages if isinstance(m, VoteRequest)]
        assert reqs and all(r.pre_vote is pre for r in reqs)
        for req in reqs[: core.quorum - 1]:
            core.step(VoteResponse(req.term, req.dst, core.id, True, pre))
    assert core.role == Role.LEADER


def cfg(me: str, **kw: object) -> RaftConfig:
    return RaftConfig(member_id=me, members=("s1", "s2", "s3", "s4", "s5"), **kw)  # type: ignore[arg-type]


def test_figure8_old_term_entry_is_not_committed_by_counting_replicas() -> None:
    # s1 leads term 4 with an entry from term 2 that only it and s2 hold.
    log = [Entry(1, 1, put("a", 1), "r1"), Entry(2, 2, put("a", 2), "r2")]
    core = RaftCore(cfg("s1"), random.Random(1), KVStateMachine(),
                    InitialState(HardState(3, None, 1), None, log))
    make_leader(core)
    noop = core.log.last_index
    assert core.log.term_at(noop) == core.term
    ready = core.ready()
    assert ready.early and ready.mark is not None
    core.step(ready.mark)  # the leader's own write of the no-op is durable
    # s2 and s3 now hold index 2: a majority with s1, but the entry is from term 2
    core.step(AppendResponse(core.term, "s2", "s1", True, 2))
    core.step(AppendResponse(core.term, "s3", "s1", True, 2))
    assert core.commit == 1
    # once the term-4 no-op is on a majority, everything before it commits with it
    core.step(AppendResponse(core.term, "s2", "s1", True, noop))
    core.step(AppendResponse(core.term, "s3", "s1", True, noop))
    assert core.commit == noop


def test_election_restriction_rejects_a_candidate_with_an_older_log() -> None:
    log = [Entry(1, 1, None, "r1"), Entry(3, 2, None, "r2")]
    voter = RaftCore(cfg("s2"), random.Random(2), KVStateMachine(),
                     InitialState(HardState(3, None, 2), None, log))
    # longer log but older last term: rejected (paper 5.4.1)
    voter.step(VoteRequest(4, "s1", "s2", 5, 2, False))
    # same last term, shorter log: rejected
    voter.step(VoteRequest(4, "s3", "s2", 1, 3, False))
    # at least as up to date: granted
    voter.step(VoteRequest(4, "s4", "s2", 2, 3, False))
    votes = {m.dst: m.granted for m in voter.ready().messages if isinstance(m, VoteResponse)}
    assert votes == {"s1": False, "s3": False, "s4": True}


def _pre_candidate(me: str, log: list[Entry]) -> RaftCore:
    core = RaftCore(cfg(me), random.Random(5), KVStateMachine(),
                    InitialState(HardState(3, None, 0), None, log))
    while core.role != Role.PRE_CANDIDATE:
        core.step(Tick())
    core.ready()
    return core


def test_two_members_timing_out_together_do_not_split_their_pre_votes() -> None:
    """Equal logs: the lower id wins the tie (its peer grants, it refuses the peer), so one
    real election follows instead of two candidates splitting the vote in one term."""
    log = [Entry(1, 1, None, "r1"), Entry(3, 2, None, "r2")]
    low, high = _pre_candidate("s1", log), _pre_candidate("s2", log)
    low.step(VoteRequest(4, "s2", "s1", 2, 3, True))
    high.step(VoteRequest(4, "s1", "s2", 2, 3, True))
    granted = {c.id: [m.granted for m in c.ready().messages if isinstance(m, VoteResponse)]
               for c in (low, high)}
    assert granted == {"s1": [False], "s2": [True]}
    # a newer log still wins over an id; a follower grants as before
    low.step(VoteRequest(4, "s2", "s1", 3, 3, True))
    follower = RaftCore(cfg("s1"), random.Random(6), KVStateMachine(),
                        InitialState(HardState(3, None, 0), None, log))
    follower.step(VoteRequest(4, "s2", "s1", 2, 3, True))
    assert [m.granted for m in low.ready().messages if isinstance(m, VoteResponse)] == [True]
    assert [m.granted for m in follower.ready().messages
            if isinstance(m, VoteResponse)] == [True]


def test_the_lease_ends_a_heartbeat_interval_before_the_shortest_election_timeout() -> None:
    """A peer whose election timeout is the shortest (election_ticks) may tick out of phase
    with us: a follower that last heard the leader election_ticks - heartbeat_ticks ticks
    ago grants its pre-vote (it used to ignore it, and the peer waited a whole new
    timeout); one that heard it a tick later still ignores a stray candidate."""
    log = [Entry(1, 1, None, "r1"), Entry(3, 2, None, "r2")]

    def heard_leader_ticks_ago(ticks: int) -> RaftCore:
        follower = RaftCore(cfg("s2", election_ticks=10, heartbeat_ticks=2),
                            random.Random(7), KVStateMachine(),
                            InitialState(HardState(3, None, 0), None, log))
        follower.step(AppendRequest(3, "s1", "s2", 2, 3, (), 2))
        for _ in range(ticks):
            follower.step(Tick())
        assert follower.role == Role.FOLLOWER and follower.leader == "s1"
        follower.ready()
        follower.step(VoteRequest(4, "s3", "s2", 2, 3, True))
        return follower

    def granted(core: RaftCore) -> list[bool]:
        return [m.granted for m in core.ready().messages if isinstance(m, VoteResponse)]

    assert granted(heard_leader_ticks_ago(8)) == [True]
    assert granted(heard_leader_ticks_ago(7)) == []


def test_fast_backtracking_skips_a_whole_conflicting_term() -> None:
    # the follower holds 30 entries of a term-2 leader that never committed them
    stale = [Entry(1, 1, None, "r1")] + [Entry(2, i, None, f"x{i}") for i in range(2, 32)]
    follower = RaftCore(cfg("s2"), random.Random(3), KVStateMachine(),
                        InitialState(HardState(2, None, 1), None, stale))
    good = [Entry(1, 1, None, "r1")] + [Entry(3, i, None, f"y{i}") for i in range(2, 41)]
    leader = RaftCore(cfg("s1"), random.Random(4), KVStateMachine(),
                      InitialState(HardState(3, None, 1), None, good))
    make_leader(leader)
    leader.ready()
    leader.ready()
    rounds = 0
    msgs = [m for m in leader.ready().messages if m.dst == "s2"]
    leader.step(AppendResponse(leader.term, "s2", "s1", False, leader.log.last_index - 1, 31, 2))
    while rounds < 10:
        msgs = [m for m in leader.ready().messages
                if m.dst == "s2" and isinstance(m, AppendRequest)]
        if not msgs:
            break
        rounds += 1
        for m in msgs:
            follower.step(m)
        for r in follower.ready().messages:
            leader.step(r)
        if follower.log.last_index == leader.log.last_index and follower.log.matches(
            leader.log.last_index, leader.log.last_term
        ):
            break
    assert follower.log.matches(leader.log.last_index, leader.log.last_term)
    assert rounds <= 3  # one probe per conflicting term, not one per entry


def _sent_to(c: Cluster, dst: str) -> list[object]:
    """Every message sent to ``dst`` from now on (a spy on the network)."""
    sent: list[object] = []
    original = c.net.send

    def spy(src: str, to: str, msg: object) -> None:
        if to == dst:
            sent.append(msg)
        original(src, to, msg)

    c.net.send = spy  # type: ignore[method-assign]
    return sent


def test_lagging_member_catches_up_through_install_snapshot() -> None:
    c, lead = elected(3, snapshot_threshold=10)
    lagger = next(m for m in c.ids if m != lead)
    c.crash(lagger)
    for i in range(40):
        c.write(lead, put(f"k{i % 4}", i))
        c.run(1)
    assert c.node(lead).log.base_index > 10
    sent = _sent_to(c, lagger)
    c.restart(lagger)
    c.settle()
    assert any(isinstance(m, InstallSnapshot) and m.dst == lagger for m in sent)
    assert c.storage[lagger].snapshot is not None
    assert c.node(lagger).applier.sm.data == c.node(lead).applier.sm.data


def test_a_follower_trailing_within_the_window_catches_up_with_appends() -> None:
    """Every member has taken a snapshot, but the entries it covers are still held (the
    catch-up window): the follower that missed them all gets appends, not a snapshot."""
    c, lead = elected(3, snapshot_threshold=10, snapshot_trail=100)
    lagger = next(m for m in c.ids if m != lead)
    c.crash(lagger)
    behind = c.storage[lagger].last_index  # what it restarts with
    for i in range(12):  # one threshold crossing per member, whatever its phase
        c.write(lead, put(f"k{i % 4}", i))
        c.run(1)
    leader = c.node(lead)
    assert c.storage[lead].snapshot is not None  # snapshotted (and durable)...
    assert leader.log.base_index <= behind  # ...but the log still reaches the lagger
    sent = _sent_to(c, lagger)
    c.restart(lagger)
    c.settle()
    assert not any(isinstance(m, InstallSnapshot) for m in sent)
    assert any(isinstance(m, AppendRequest) and m.entries for m in sent)
    assert leader.snapshots_sent == 0
    assert c.node(lagger).applier.sm.data == leader.applier.sm.data


def test_a_follower_trailing_beyond_the_window_gets_the_newest_snapshot() -> None:
    c, lead = elected(3, snapshot_threshold=10, snapshot_trail=3)
    lagger = next(m for m in c.ids if m != lead)
    c.crash(lagger)
    for i in range(40):
        c.write(lead, put(f"k{i % 4}", i))
        c.run(1)
    leader = c.node(lead)
    newest = c.storage[lead].snapshot
    assert newest is not None and leader.log.base_index > c.storage[lagger].last_index
    sent = _sent_to(c, lagger)
    c.restart(lagger)
    c.settle()
    installs = [m for m in sent if isinstance(m, InstallSnapshot)]
    assert installs and installs[0].snapshot.index == newest.index
    assert leader.snapshots_sent >= 1 and c.node(lagger).snapshots_installed == 1
    assert c.node(lagger).applier.sm.data == leader.applier.sm.data


def test_snapshots_taken_with_proposals_in_flight_keep_their_answers() -> None:
    """Every member snapshots while the next proposals are still in flight; a member that
    restores the snapshot (installed from the leader) still answers a retry of a request
    the snapshot covers from its dedup table, and applies nothing twice."""
    c, lead = elected(3, snapshot_threshold=8)
    lagger = next(m for m in c.ids if m != lead)
    c.crash(lagger)
    rids = []
    for i in range(30):  # several proposals per round: snapshots cut through batches
        rids += [c.write(lead, put(f"k{i % 3}", i)), c.write(lead, put("j", i))]
        c.step_one()  # part of the traffic moves; the rest is in flight at the next write
        c.step_one()
        if i % 3 == 2:
            c.run(1)
    c.run(5)
    assert c.node(lead).log.base_index >= 8
    assert all(r in c.check.acked for r in rids)
    c.restart(lagger)
    c.settle()
    assert c.storage[lagger].snapshot is not None  # it caught up from a snapshot
    c.crash(lead)  # the member that restored the table may now lead
    c.run(60)
    new = c.leader()
    assert new is not None
    c.write(new, put("k0", -1), rid=rids[0])  # a retry of the very first request
    c.run(3)
    again = [r for m, r in c.replies if m == new and r.request_id == rids[0]]
    assert isinstance(again[-1], ProposalResult)
    assert again[-1].index == c.check.acked[rids[0]]  # answered, not applied again
    assert all(c.node(m).applier.sm.get("k0") != -1 for m in c.live())


def test_a_retry_after_the_dedup_window_applies_again_the_same_on_every_member() -> None:
    c, lead = elected(3, dedup_window=10)
    rid = c.write(lead, put("n", 1))
    c.run(3)
    for i in range(12):
        c.write(lead, put("other", i))
        c.run(1)
    c.write(lead, put("n", 1), rid=rid)  # the client gave up too late: at least once
    c.run(3)
    assert [i for i, _seq in c.check.applications[rid]] == sorted(
        {i for i, _seq in c.check.applications[rid]})
    assert len(c.check.applications[rid]) == 2
    versions = {c.node(m).applier.sm.data["n"] for m in c.ids}
    assert len(versions) == 1  # deterministic: every member applied it again


def test_retry_with_same_request_id_after_leader_change_applies_once() -> None:
    c, lead = elected(3)
    rid = c.write(lead, {"op": "put", "key": "n", "value": 7})
    c.run(3)
    first = next(r for _m, r in c.replies if isinstance(r, ProposalResult)
                 and r.request_id == rid)
    c.crash(lead)
    c.run(40)
    new = c.leader()
    assert new is not None and new != lead
    # the client timed out before seeing the answer and retries at the new leader
    c.write(new, {"op": "put", "key": "n", "value": 7}, rid=rid)
    c.run(3)
    again = [r for m, r in c.replies if m == new and r.request_id == rid]
    assert isinstance(again[-1], ProposalResult)
    assert again[-1].result == first.result and again[-1].index == first.index
    assert c.check.first_application[rid] == first.index


def test_follower_forwards_proposals_and_reads_to_the_leader() -> None:
    c, lead = elected(3)
    follower = next(m for m in c.ids if m != lead)
    rid = c.write(follower, put("f", 1))
    c.run(4)
    assert any(m == follower and isinstance(r, ProposalResult) and r.request_id == rid
               for m, r in c.replies)
    read = c.read(follower, "f")
    c.run(4)
    got = [r for m, r in c.replies if m == follower and r.request_id == read]
    assert isinstance(got[0], ReadResult) and got[0].result["value"] == 1


def test_follower_decides_how_a_proposal_reaches_the_leader() -> None:
    """The core alone decides forwarding: a relayable request is relayed whole (capped),
    an in-process one is forwarded as a command and answered where it was asked."""
    c, lead = elected(3)
    follower = c.node(next(m for m in c.ids if m != lead))
    follower.step(Propose(put("a", 1), "relay", relayable=True))
    follower.step(Propose(put("a", 2), "bounced", relayable=True, hops=MAX_RELAYS))
    follower.step(Propose(put("a", 3), "local"))
    ready = follower.ready()
    assert ready.replies == [Redirect("relay", lead, 1), NotLeader("bounced", lead)]
    forwarded = [m for m in ready.messages if isinstance(m, ForwardProposals)]
    assert [(m.dst, [rid for _cmd, rid in m.items]) for m in forwarded] == [(lead, ["local"])]


def test_member_without_a_leader_answers_not_leader() -> None:
    core = RaftCore(cfg("s1"), random.Random(5), KVStateMachine())
    core.step(Propose(put("a", 1), "p1"))
    core.step(Read({"op": "get", "key": "a"}, "q1"))
    replies = core.ready().replies
    assert replies == [NotLeader("p1", None), NotLeader("q1", None)]


def test_single_member_group_commits_and_reads_alone() -> None:
    core = RaftCore(RaftConfig(member_id="solo", members=("solo",)), random.Random(6),
                    KVStateMachine())
    while core.role != Role.LEADER:
        core.step(Tick())
    core.step(Propose(put("a", 1), "p1"))
    core.step(Read({"op": "get", "key": "a"}, "q1"))
    replies = core.ready().replies
    assert isinstance(replies[0], ProposalResult) and replies[0].result["ok"]
    assert isinstance(replies[1], ReadResult) and replies[1].result["value"] == 1


def test_leader_counts_itself_only_after_its_own_write_is_durable() -> None:
    core = RaftCore(cfg("s1"), random.Random(5), KVStateMachine())
    make_leader(core)
    first = core.ready()  # the no-op: sent before the leader's own write is durable
    assert first.early and first.mark is not None
    core.step(first.mark)
    for peer in ("s2", "s3"):
        core.step(AppendResponse(core.term, peer, "s1", True, core.log.last_index))
    core.step(Propose(put("a", 1), "w1"))
    ready = core.ready()
    assert ready.early and ready.mark is not None
    assert any(isinstance(m, AppendRequest) and m.entries for m in ready.messages)
    index = core.log.last_index
    # two followers hold it; with the leader that would be 3 of 5, but its copy is not
    # on disk yet, so only 2 of 5 count
    core.step(AppendResponse(core.term, "s2", "s1", True, index))
    core.step(AppendResponse(core.term, "s3", "s1", True, index))
    assert core.commit < index
    core.step(ready.mark)
    assert core.commit == index
    replies = core.ready().replies
    assert [r.request_id for r in replies] == ["w1"]


def test_a_leader_crash_before_its_fsync_loses_no_committed_entry() -> None:
    """Followers acknowledge an entry the leader never made durable; the leader crashes
    (losing it); the entry was committed by the followers alone and must survive."""
    c, lead = elected(3)
    c.write_rate = 0.0  # the leader's disk stalls: its early writes stay in flight
    c.deliver_all()
    core = c.node(lead)
    before = core.commit
    rid = c.write(lead, put("k", 7))
    for _ in range(5):  # let messages flow, but the leader's disk never finishes
        c.net.advance(1)
        while c.deliver_one():
            pass
    assert c.writing[lead], "the leader's write must still be in flight"
    assert core.commit > before and rid in c.check.acked  # committed by the followers
    c.crash(lead)  # the leader's own copy of the entry is lost
    assert c.storage[lead].last_index < c.check.acked[rid]
    c.write_rate = 0.3
    c.run(60)
    c.restart(lead)
    c.settle()
    index = c.check.acked[rid]
    assert c.check.applied[index][1] == rid
    assert all(c.node(m).applier.sm.get("k") == 7 for m in c.ids)
