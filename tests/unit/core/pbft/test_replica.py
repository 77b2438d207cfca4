"""PBFT replica: quorums, and rejection of forged, replayed and equivocating messages."""

from __future__ import annotations

import random

import pytest

from broker_agents.core.errors import BrokerError
from broker_agents.core.machine import Tick
from broker_agents.core.pbft.config import Broadcast, Decide, PbftConfig, check_group_size
from broker_agents.core.pbft.messages import (
    Commit,
    NewView,
    Prepare,
    PrePrepare,
    Request,
    ViewChange,
    digest,
    parse_message,
)
from broker_agents.core.pbft.replica import Replica
from broker_agents.core.pbft.signing import (
    NkeysSigner,
    NkeysVerifier,
    seed_from_rng,
    sign_message,
)

IDS = ("r0", "r1", "r2", "r3")


@pytest.fixture(scope="module")
def keys() -> dict[str, NkeysSigner]:
    rng = random.Random(42)
    return {i: NkeysSigner(i, seed_from_rng(rng)) for i in (*IDS, "c", "mallory")}


@pytest.fixture(scope="module")
def verifier(keys: dict[str, NkeysSigner]) -> NkeysVerifier:
    return NkeysVerifier({i: k.public_key for i, k in keys.items() if i != "mallory"})


def replica(me: str, keys: dict[str, NkeysSigner], verifier: NkeysVerifier) -> Replica:
    return Replica(PbftConfig(me, IDS, view_timeout=5), keys[me], verifier)


def request(keys: dict[str, NkeysSigner], op: str = "v", rid: str = "1") -> Request:
    return sign_message(Request(client="c", request_id=rid, operation=op), keys["c"])


def pre_prepare(
    keys: dict[str, NkeysSigner], req: Request, view: int = 0, seq: int = 1
) -> PrePrepare:
    primary = IDS[view % 4]
    return sign_message(
        PrePrepare(view=view, seq=seq, digest=digest(req), request=req, sender=primary),
        keys[primary],
    )


def vote(kind: type[Prepare] | type[Commit], keys: dict[str, NkeysSigner], sender: str,
         d: str, view: int = 0, seq: int = 1, signer: str | None = None) -> Prepare | Commit:
    return sign_message(kind(view=view, seq=seq, digest=d, sender=sender),
                        keys[signer or sender])


@pytest.mark.parametrize(("n", "f", "needed"), [(3, None, 4), (6, 2, 7), (1, None, 4)])
def test_too_few_participants_says_needed_and_present(n: int, f: int | None, needed: int) -> None:
    with pytest.raises(BrokerError) as ei:
        check_group_size(n, f)
    assert ei.value.code == "too_few_participants"
    assert ei.value.details["needed"] == needed and ei.value.details["have"] == n


def test_group_sizes_that_suffice() -> None:
    assert check_group_size(4) == 1 and check_group_size(7) == 2 and check_group_size(10) == 3


def test_backup_decides_only_with_2f_prepares_and_2f1_commits(keys, verifier) -> None:
    r = replica("r1", keys, verifier)
    req = request(keys)
    d = digest(req)
    out = r.step(pre_prepare(keys, req))
    assert any(isinstance(e, Broadcast) and isinstance(e.msg, Prepare) for e in out)
    out = r.step(vote(Prepare, keys, "r2", d))  # own + r2 = 2f prepares: prepared
    assert any(isinstance(e, Broadcast) and isinstance(e.msg, Commit) for e in out)
    assert not any(isinstance(e, Decide) for e in r.step(vote(Commit, keys, "r2", d)))
    out = r.step(vote(Commit, keys, "r0", d))  # own + r2 + r0 = 2f+1
    decided = [e for e in out if isinstance(e, Decide)]
    assert len(decided) == 1 and decided[0].seq == 1 and decided[0].request == req


def test_prepare_from_the_primary_does_not_count(keys, verifier) -> None:
    r = replica("r1", keys, verifier)
    req = request(keys)
    r.step(pre_prepare(keys, req))
    out = r.step(vote(Prepare, keys, "r0", digest(req)))
    assert not any(isinstance(e, Broadcast) and isinstance(e.msg, Commit) for e in out)
    assert r.counters.invalid == 1


def test_forged_signature_and_impersonation_are_rejected_and_counted(keys, verifier) -> None:
    r = replica("r1", keys, verifier)
    req = request(keys)
    r.step(pre_prepare(keys, req))
    assert r.step(vote(Prepare, keys, "r2", digest(req), signer="r3")) == []
    assert r.step(vote(Prepare, keys, "mallory", digest(req))) == []
    evil = sign_message(Request(client="c", request_id="2", operation="evil"), keys["r0"])
    assert r.step(evil) == []
    tampered = pre_prepare(keys, req).model_copy(update={"seq": 2})
    assert r.step(tampered) == []
    assert r.counters.forged == 4
    assert not r.slots[(0, 1)].prepared


def test_replayed_message_is_counted_and_ignored(keys, verifier) -> None:
    r = replica("r1", keys, verifier)
    req = request(keys)
    pp = pre_prepare(keys, req)
    p2 = vote(Prepare, keys, "r2", digest(req))
    r.step(pp)
    r.step(p2)
    assert r.step(p2) == [] and r.step(pp) == []
    assert r.counters.replayed == 2


def test_equivocating_prepare_is_counted_and_first_one_kept(keys, verifier) -> None:
    r = replica("r1", keys, verifier)
    a, b = request(keys, "a"), request(keys, "b", rid="2")
    r.step(pre_prepare(keys, a))
    r.step(vote(Prepare, keys, "r3", digest(b)))
    r.step(vote(Prepare, keys, "r3", digest(a)))
    assert r.counters.equivocations == 1
    assert r.slots[(0, 1)].prepares["r3"].digest == digest(b)


def test_equivocating_primary_triggers_a_view_change(keys, verifier) -> None:
    r = replica("r1", keys, verifier)
    a, b = request(keys, "a"), request(keys, "b", rid="2")
    r.step(pre_prepare(keys, a))
    out = r.step(pre_prepare(keys, b))
    assert r.counters.equivocations == 1 and r.view == 1 and not r.active
    assert any(isinstance(e, Broadcast) and isinstance(e.msg, ViewChange) for e in out)


def test_silent_primary_is_replaced_after_timeout(keys, verifier) -> None:
    reps = {i: replica(i, keys, verifier) for i in IDS[1:]}
    req = request(keys)
    inbox = []
    for r in reps.values():
        r.step(req)
    for _ in range(5):
        for i, r in reps.items():
            inbox.extend((i, e.msg) for e in r.step(Tick()) if isinstance(e, Broadcast))
    decided = {}
    while inbox:
        src, msg = inbox.pop(0)
        for i, r in reps.items():
            if i == src:
                continue
            for e in r.step(msg):
                if isinstance(e, Broadcast):
                    inbox.append((i, e.msg))
                if isinstance(e, Decide):
                    decided[i] = (e.seq, e.request)
    assert {r.view for r in reps.values()} == {1} and all(r.active for r in reps.values())
    assert decided == {i: (1, req) for i in reps}


def test_new_view_with_a_rewritten_plan_is_invalid(keys, verifier) -> None:
    vcs = tuple(
        sign_message(ViewChange(new_view=1, last_executed=0, sender=i), keys[i])
        for i in ("r1", "r2", "r3")
    )
    req = request(keys)
    bogus = sign_message(PrePrepare(view=1, seq=1, digest=digest(req), request=req, sender="r1"),
                         keys["r1"])
    nv = sign_message(NewView(view=1, view_changes=vcs, pre_prepares=(bogus,), sender="r1"),
                      keys["r1"])
    r = replica("r2", keys, verifier)
    assert r.step(nv) == [] and r.counters.invalid == 1
    good = sign_message(NewView(view=1, view_changes=vcs, pre_prepares=(), sender="r1"),
                        keys["r1"])
    r.step(good)
    assert r.view == 1 and r.active


def test_messages_round_trip_through_the_wire_form(keys) -> None:
    pp = pre_prepare(keys, request(keys))
    assert parse_message(pp.model_dump(mode="json")) == pp


def test_nkeys_signatures_verify_only_for_the_signer(keys, verifier) -> None:
    sig = keys["r1"].sign(b"data")
    assert verifier.verify("r1", b"data", sig)
    assert not verifier.verify("r2", b"data", sig)
    assert not verifier.verify("r1", b"dat4", sig)
    assert not verifier.verify("mallory", b"data", keys["mallory"].sign(b"data"))
    assert keys["r1"].public_key.startswith("U")
