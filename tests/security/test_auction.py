"""Auction acts bound to their principals, on a secured server (issue 13, "Money").

An auctioneer and honest bidder agents run in-process on a node connection, as a node
hosts them. Each attack runs as the least-privileged principal that could try it: a
client ("mallory") for requests, pushed bids and messages to agents' inboxes; a node for
answers on reply subjects (only nodes may publish into other users' inboxes). Each ends
refused with a structured error, and no money moves that should not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from broker_agents import codec, identity
from broker_agents.auction.auctioneer import AuctioneerAgent
from broker_agents.auction.bidder import BidderAgent
from broker_agents.auction.client import run_auction
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.messages import AwardNotice
from broker_agents.core.auction import Award
from broker_agents.core.errors import BrokerError
from broker_agents.gather import gatherer
from broker_agents.identity import UNAUTHORIZED
from broker_agents.kv import open_bucket
from broker_agents.messages import envelope
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from tests.integration.auction.helpers import watch_record
from tests.integration.test_runtime import Hosted
from tests.security.violations import Violations

S = Subjects()
Connect = Callable[..., Coroutine[Any, Any, NATS]]
FUNDS = 100.0


@pytest.fixture
async def market(connect: Connect) -> AsyncIterator[Hosted]:
    """An auctioneer and bidders hosted on a node; victim and honest funded with 100."""
    hosted = Hosted(await connect(Role.NODE))
    await hosted.add(AuctioneerAgent("auc", sweep_ms=60_000))
    await hosted.add(BidderAgent("victim", value=10.0))
    await hosted.add(BidderAgent("honest", value=8.0))
    await hosted.add(BidderAgent("slowpoke", value=1.0, delay_ms=1500))
    await hosted.add(BidderAgent("slow-winner", value=12.0, ack_delay_ms=1000))
    book = await ledger(hosted.nc)
    for who in ("victim", "honest", "slow-winner"):
        await book.deposit(who, FUNDS, f"fund-{who}")
    yield hosted
    await hosted.stop_all()


async def ledger(nc: NATS) -> Ledger:
    return Ledger(await open_bucket(nc.jetstream(), S.bucket("accounts")))


async def balances(nc: NATS, *who: str) -> dict[str, tuple[float, float] | None]:
    book = await ledger(nc)
    out: dict[str, tuple[float, float] | None] = {}
    for name in who:
        acc = await book.account(name)
        out[name] = None if acc is None else (acc.balance, acc.reserved)
    return out


async def ask(nc: NATS, subject: str, body: Any, *, signed: bool = True,
              timeout: float = 10) -> Any:
    reply = await nats_request(nc, subject, codec.encode(body), timeout, signed=signed)
    return codec.decode(reply.data, reply.headers)


def error_of(reply: Any) -> BrokerError:
    err = BrokerError.from_payload(reply)
    assert err is not None, f"expected an error reply, got {reply!r}"
    return err


def unauthorized(component: str, reason: str) -> float:
    return UNAUTHORIZED.labels(component, reason)._value.get()


async def no_record(nc: NATS, aid: str) -> bool:
    kv = await open_bucket(nc.jetstream(), S.bucket("auctions"))
    try:
        await kv.get(aid)
    except Exception:
        return True
    return False


# -- 1. phantom auction: a seller who is not the requester ---------------------------


async def test_a_client_cannot_run_an_auction_for_another_seller(market: Hosted,
                                                                 connect: Connect) -> None:
    mallory = await connect(Role.CLIENT, user="mallory")
    before = unauthorized("auctioneer", "identity_mismatch")
    for i, seller in enumerate(("accomplice", "market")):
        aid = f"phantom-{i}"
        with pytest.raises(BrokerError) as err:
            await run_auction(mallory, {"auction_id": aid, "type": "first_price",
                                        "participants": ["victim"], "seller": seller})
        assert err.value.code == "unauthorized"
        assert err.value.details["reason"] == "identity_mismatch"
        assert err.value.details["claimed"] == seller
        assert await no_record(market.nc, aid)
    unsigned = error_of(await ask(mallory, S.coord("auction"), {
        "auction_id": "phantom-u", "type": "first_price", "participants": ["victim"],
        "seller": "accomplice"}, signed=False))
    assert unsigned.code == "unauthorized" and unsigned.details["reason"] == "unsigned"
    assert unauthorized("auctioneer", "identity_mismatch") == before + 2
    assert await balances(market.nc, "victim", "accomplice", "market") == {
        "victim": (FUNDS, 0.0), "accomplice": None, "market": None}


async def test_the_requester_is_the_seller_and_an_admin_may_name_one(
        market: Hosted, connect: Connect) -> None:
    shop = await connect(Role.CLIENT, user="shop")
    own = await run_auction(shop, {"type": "first_price", "participants": ["honest"]})
    assert (own["seller"], own["winner"], own["status"]) == ("shop", "honest", "settled")
    admin = await connect(Role.ADMIN)
    house = await run_auction(admin, {"type": "first_price", "participants": ["victim"]})
    assert (house["seller"], house["status"]) == ("market", "settled")
    assert await balances(market.nc, "shop", "market") == {"shop": (8.0, 0.0),
                                                           "market": (10.0, 0.0)}


# -- 2. bidding as someone else on the bid subject -----------------------------------


async def test_a_bid_pushed_in_someone_elses_name_is_unauthorized(
        market: Hosted, connect: Connect) -> None:
    shop = await connect(Role.CLIENT, user="shop")
    mallory = await connect(Role.CLIENT, user="mallory")
    aid = "pushed-as-victim"
    running = asyncio.ensure_future(run_auction(shop, {
        "auction_id": aid, "type": "first_price", "participants": ["victim", "slowpoke"],
        "duration_ms": 5000}))
    await watch_record(market.nc, aid)
    forged = {"auction_id": aid, "msg_id": "m-1", "bidder": "victim", "amount": 95.0}
    for signed, reason in ((True, "identity_mismatch"), (False, "unsigned")):
        err = error_of(await ask(mallory, S.auction(aid, "bid"), forged, signed=signed))
        assert err.code == "unauthorized" and err.details["reason"] == reason
    result = await running
    assert (result["winner"], result["price"], result["num_bids"]) == ("victim", 10.0, 1)
    assert await balances(market.nc, "victim", "shop") == {"victim": (FUNDS - 10.0, 0.0),
                                                           "shop": (10.0, 0.0)}


# -- 3. answers to calls for bids are the bidder's acts -------------------------------


async def _forged_bidders(nc: NATS) -> list[str]:
    """Participants whose answers are not their own acts: signed as another agent
    (victim), signed by their node as itself. Each bids 50 in its own name. (An unsigned
    answer in the auctioneer's inbox is its node's word for the agent it hosts: only nodes
    may publish there, which the next test pins.)"""

    def responder(name: str, acting_for: str | None, sign: bool
                  ) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        async def answer(msg: Msg) -> None:
            aid = codec.decode(msg.data)["data"]["config"]["auction_id"]
            data = codec.encode({"bids": [{"auction_id": aid, "msg_id": f"{name}-1",
                                           "bidder": name, "amount": 50.0}]})
            headers = identity.act_headers(nc, msg.reply, data, acting_for) if sign else None
            await nc.publish(msg.reply, data, headers=headers)
        return answer

    names = {"f-as-victim": ("victim", True), "f-as-node": (None, True)}
    for name, (acting_for, sign) in names.items():
        await nc.subscribe(S.agent(name), cb=responder(name, acting_for, sign))
    await nc.flush()
    return list(names)


async def test_bid_answers_signed_for_anyone_but_the_bidder_asked_are_dropped(
        market: Hosted, connect: Connect) -> None:
    forgers = await _forged_bidders(await connect(Role.NODE))
    shop = await connect(Role.CLIENT, user="shop")
    refused = UNAUTHORIZED.labels("gather", "identity_mismatch")
    dropped = refused._value.get()
    result = await run_auction(shop, {"type": "first_price", "budgets": False,
                                      "participants": [*forgers, "honest"]})
    assert (result["winner"], result["price"], result["num_bids"]) == ("honest", 8.0, 1)
    assert refused._value.get() == dropped + 2


async def test_a_client_cannot_publish_into_the_auctioneers_reply_subjects(
        market: Hosted, connect: Connect) -> None:
    violations = Violations()
    mallory = await connect(Role.CLIENT, user="mallory", error_cb=violations.on_error)
    reply_subject = f"{(await gatherer(market.nc)).prefix}.1-0"
    await mallory.publish(reply_subject, codec.encode({"auction_id": "x", "bidder": "victim",
                                                       "accepted": False}))
    await violations.expect(reply_subject)


# -- 4. a bidder acknowledges only awards of its own bids -----------------------------


def _notice(aid: str, winner: str, price: float, msg_id: str) -> dict[str, Any]:
    award = Award(bidder=winner, items=("item",), bid=price, price=price, msg_id=msg_id)
    return envelope(AwardNotice(auction_id=aid, awards=[award], total=price,
                                seller="mallory"))


async def test_a_bidder_declines_an_award_of_an_auction_it_never_bid_in(
        market: Hosted, connect: Connect) -> None:
    mallory = await connect(Role.CLIENT, user="mallory")  # clients may write to agents
    reply = await nats_request(mallory, S.agent("victim"),
                               codec.encode(_notice("never-held", "victim", 95.0, "m-1")), 10)
    ack = codec.decode(reply.data)
    assert ack["accepted"] is False and "did not bid" in ack["reason"]
    assert ack["seller"] == "mallory"  # what it answered: the notice it was shown
    signer = identity.authenticate(mallory, reply.subject, reply.data, reply.headers,
                                   component="test")
    assert signer is not None and signer.identity == "victim"  # its own signed answer


async def test_a_bidder_declines_an_award_above_its_bid(market: Hosted,
                                                        connect: Connect) -> None:
    shop = await connect(Role.CLIENT, user="shop")
    result = await run_auction(shop, {"type": "first_price", "participants": ["victim"],
                                      "budgets": False})
    assert (result["winner"], result["price"]) == ("victim", 10.0)
    aid = result["auction_id"]
    mallory = await connect(Role.CLIENT, user="mallory")
    own_bid = f"victim-1-1-{aid}"  # the bidder's message id scheme
    for msg_id, price, why in ((own_bid, 95.0, "exceeds"), ("m-2", 5.0, "not one of")):
        reply = await nats_request(mallory, S.agent("victim"),
                                   codec.encode(_notice(aid, "victim", price, msg_id)), 10)
        ack = codec.decode(reply.data)
        assert ack["accepted"] is False and why in ack["reason"], ack


async def test_a_forged_decline_on_the_winners_reply_subject_is_not_taken(
        market: Hosted, connect: Connect) -> None:
    """A node-level forger (a client cannot publish there, see above) answers the award
    first: unsigned, then signed by mallory. Neither is taken as the winner's decline."""
    mallory = await connect(Role.CLIENT, user="mallory")
    forger = await connect(Role.NODE)
    shop = await connect(Role.CLIENT, user="shop")
    results, forged = [], []
    for sign in (False, True):
        async def decline(msg: Msg, sign: bool = sign) -> None:
            if b"auction.award" not in msg.data:
                return
            forged.append(msg.reply)
            aid = codec.decode(msg.data)["data"]["auction_id"]
            data = codec.encode({"auction_id": aid, "bidder": "slow-winner",
                                 "accepted": False, "reason": "forged"})
            headers = identity.act_headers(mallory, msg.reply, data) if sign else None
            await forger.publish(msg.reply, data, headers=headers)

        sub = await forger.subscribe(S.agent("slow-winner"), cb=decline)
        await forger.flush()
        results.append(await run_auction(shop, {"type": "first_price",
                                                "participants": ["slow-winner"]}))
        await sub.unsubscribe()
    assert len(forged) == 2  # the forger did answer each award first
    for result in results:  # the forged answer did not take the winner's place
        assert (result["winner"], result["status"]) == ("slow-winner", "settled"), result
    paid = sum(r["price"] for r in results)
    assert await balances(market.nc, "slow-winner") == {"slow-winner": (FUNDS - paid, 0.0)}


# -- 5. sealed bids stay sealed until the close ---------------------------------------


async def test_nothing_a_participant_receives_reveals_another_sealed_bid(
        market: Hosted, connect: Connect) -> None:
    violations = Violations()
    alice = await connect(Role.CLIENT, user="alice", error_cb=violations.on_error)
    bob = await connect(Role.CLIENT, user="bob")
    watcher = await connect(Role.OBSERVER)
    shop = await connect(Role.CLIENT, user="shop")
    aid = "sealed-1"
    events: asyncio.Queue[str] = asyncio.Queue()

    async def seen(msg: Msg) -> None:
        events.put_nowait(msg.subject.rsplit(".", 1)[-1])

    for what in ("announce", "closed"):
        await watcher.subscribe(S.auction(aid, what), cb=seen)
    await watcher.flush()
    running = asyncio.ensure_future(run_auction(shop, {
        "auction_id": aid, "type": "first_price", "budgets": False,
        "participants": ["alice", "bob", "slowpoke"], "duration_ms": 5000}))
    await watch_record(market.nc, aid)
    bob_bid = {"auction_id": aid, "msg_id": "b-1", "bidder": "bob", "amount": 30.0}
    receipt = await ask(bob, S.auction(aid, "bid"), bob_bid)
    assert receipt["kind"] == "bid_accepted" and "seq" not in receipt
    # alice probes with bob's message id: it is hers alone, so it says nothing of bob's
    probe = await ask(alice, S.auction(aid, "bid"), {**bob_bid, "bidder": "alice",
                                                     "amount": 20.0})
    assert probe["kind"] == "bid_accepted" and "seq" not in probe, probe
    assert set(probe) == {"kind", "auction_id", "msg_id", "bidder", "amount"}
    # nor may she listen to the bid subject or bob's inbox
    for subject in (S.auction(aid, "bid"), S.agent("bob")):
        await alice.subscribe(subject)
        await violations.expect(subject, "subscription")
    result = await running
    assert (result["winner"], result["price"], result["num_bids"]) == ("bob", 30.0, 3)
    assert await asyncio.wait_for(events.get(), 5) == "closed"  # no announce before it
