"""Money on a secured server (issue 13, "Money" and "Corrupt records").

The treasury, an auctioneer and bidders run in-process on a node connection, as a node
hosts them. Each attack runs as the least-privileged principal that could try it: a
client ("mallory") for requests and bucket writes; a node where the attack needs what
only nodes may do (write a bucket, publish into an inbox, speak for an agent). Each ends
refused with a structured error (or a NATS permissions violation), counted, with money
conserved and nobody's balance changed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from broker_agents import codec, identity
from broker_agents.auction import settle
from broker_agents.auction.auctioneer import AuctioneerAgent
from broker_agents.auction.bidder import BidderAgent
from broker_agents.auction.client import run_auction
from broker_agents.auction.driver import AuctionDriver
from broker_agents.auction.host import AuctionHost
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.messages import build_config, parse_request
from broker_agents.auction.metrics import RECONCILE_SKIPPED
from broker_agents.auction.records import AuctionRecord
from broker_agents.auction.treasury import REQUESTS, TreasuryAgent, subject, treasury_request
from broker_agents.core import auction as core
from broker_agents.core.auction.settlement import Stage
from broker_agents.core.budget import Account
from broker_agents.core.errors import BrokerError
from broker_agents.core.identity import SignedAct
from broker_agents.identity import UNAUTHORIZED
from broker_agents.kv import open_bucket
from broker_agents.kvskip import SKIPPED
from broker_agents.reputation import ReputationBook
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.auction.helpers import watch_record
from tests.integration.test_runtime import Hosted
from tests.secured import cli_args
from tests.security.violations import Violations

S = Subjects()
Connect = Callable[..., Coroutine[Any, Any, NATS]]
FUNDS = 100.0
PRICE = 40.0


def count(counter: Any, *labels: str) -> float:
    return float(counter.labels(*labels)._value.get())


async def ledger(nc: NATS) -> Ledger:
    return Ledger(await open_bucket(nc.jetstream(), S.bucket("accounts")))


async def account(nc: NATS, owner: str) -> Account | None:
    return await (await ledger(nc)).account(owner)


def error_of(reply: Any) -> BrokerError:
    err = BrokerError.from_payload(reply)
    assert err is not None, f"expected an error reply, got {reply!r}"
    return err


async def ask(nc: NATS, op: str, body: Any, *, signed: bool = True,
              acting_for: str | None = None) -> Any:
    subj = subject(S, op)
    reply = await nats_request(nc, subj, codec.encode(body), 10, signed=signed,
                               acting_for=acting_for)
    return codec.decode(reply.data, reply.headers)


@pytest.fixture
async def treasury(connect: Connect) -> AsyncIterator[Hosted]:
    hosted = Hosted(await connect(Role.NODE))
    await hosted.add(TreasuryAgent("treasury", max_amount=1e6))
    yield hosted
    await hosted.stop_all()


async def record_for(nc: NATS, aid: str, winner: str, stage: Stage, *, amount: float = PRICE,
                     seller: str = "mallory", bid: bool = True) -> AuctionRecord:
    """An auction record as an auctioneer would store it: first price, ``winner`` bid
    ``amount`` (or nobody bid), closed, in ``stage``, its owner long dead."""
    js = nc.jetstream()
    host = AuctionHost(nc=nc, subjects=S, owner="dead-auc",
                       auctions=await open_bucket(js, S.bucket("auctions")),
                       ledger=await ledger(nc),
                       reputation=ReputationBook(await open_bucket(js, S.bucket("reputation"))))
    request = parse_request({"auction_id": aid, "type": "first_price", "seller": seller,
                             "participants": [winner]})
    record, _ = AuctionDriver.new_record(host, request, build_config(request, aid), [winner],
                                         0)
    state = record.state
    if bid:
        offer = core.parse_bid({"auction_id": aid, "msg_id": f"{aid}-bid", "bidder": winner,
                                "amount": amount})
        state = core.step(state, core.BidReceived(offer, 0)).state
    state = core.step(state, core.Close(0)).state
    return record.model_copy(update={"stage": stage, "state": state, "heartbeat_ms": 0})


async def sweeper(connect: Connect) -> Hosted:
    """An auctioneer whose sweeper takes over lapsed auctions at once."""
    hosted = Hosted(await connect(Role.NODE))
    await hosted.add(AuctioneerAgent("auc", lease_ms=500, sweep_ms=50))
    return hosted


# ---- 1. minting money ------------------------------------------------------------------


async def test_a_client_cannot_mint_money_by_writing_the_accounts_bucket(
        connect: Connect, nc: NATS) -> None:
    violations = Violations()
    mallory = await connect(Role.CLIENT, user="mallory", error_cb=violations.on_error)
    forged = Account(owner="mallory", balance=1e12, deposited=1e12)
    key = f"$KV.{S.bucket('accounts')}.mallory"
    await mallory.publish(key, codec.encode(forged))
    await violations.expect(key)
    assert await account(nc, "mallory") is None


async def test_only_an_admins_signed_request_moves_money_through_the_treasury(
        treasury: Hosted, connect: Connect, nc: NATS) -> None:
    # A client may not even publish on the treasury's subjects.
    violations = Violations()
    mallory = await connect(Role.CLIENT, user="mallory", error_cb=violations.on_error)
    body = {"op_id": "mint-1", "owner": "mallory", "amount": 1e6}
    await mallory.publish(subject(S, "deposit"), codec.encode(body))
    await violations.expect(subject(S, "deposit"))

    # If it arrived anyway (a node speaking for the client, or nobody signing): refused.
    before = count(UNAUTHORIZED, "treasury", "not_treasury")
    err = error_of(await ask(nc, "deposit", body, acting_for="mallory"))
    assert err.code == "unauthorized" and err.details["reason"] == "not_treasury"
    assert count(UNAUTHORIZED, "treasury", "not_treasury") == before + 1
    err = error_of(await ask(nc, "deposit", body, signed=False))
    assert err.code == "unauthorized" and err.details["reason"] == "unsigned"
    assert await account(nc, "mallory") is None

    # The admin funds an account once per op id, within bounds.
    admin = await connect(Role.ADMIN, user="treasurer")
    first = await treasury_request(admin, "deposit", {"op_id": "fund-1", "owner": "victim",
                                                      "amount": FUNDS})
    assert (first["balance"], first["applied"]) == (FUNDS, True)
    again = await treasury_request(admin, "deposit", {"op_id": "fund-1", "owner": "victim",
                                                      "amount": FUNDS})
    assert again == first  # a repeat gets the first answer, and moves nothing
    remembered = await (await ledger(nc)).deposit("victim", FUNDS, "fund-1")
    assert remembered.balance == FUNDS  # the account itself refuses the repeat too
    for bad in (0.0, -5.0, float("nan"), float("inf"), 1e7, None, "10"):
        before_bad = count(REQUESTS, "deposit", "validation_error")
        err = error_of(await ask(admin, "deposit", {"op_id": f"bad-{bad}", "owner": "victim",
                                                    "amount": bad}))
        assert err.code == "validation_error" and err.details["field"] == "amount", bad
        assert count(REQUESTS, "deposit", "validation_error") == before_bad + 1
    err = error_of(await ask(admin, "deposit", {"owner": "victim", "amount": 1.0}))
    assert err.code == "validation_error" and err.details["field"] == "op_id"

    # Withdrawals: only available money, once; a frozen account withdraws nothing.
    out = await treasury_request(admin, "withdraw", {"op_id": "w-1", "owner": "victim",
                                                     "amount": 30.0})
    assert out["balance"] == FUNDS - 30.0
    await treasury_request(admin, "freeze", {"op_id": "f-1", "owner": "victim"})
    err = error_of(await ask(admin, "withdraw", {"op_id": "w-2", "owner": "victim",
                                                 "amount": 1.0}))
    assert err.code == "rejected" and err.details["frozen"] is True
    err = error_of(await ask(admin, "withdraw", {"op_id": "w-3", "owner": "nobody",
                                                 "amount": 1.0}))
    assert err.code == "insufficient_funds"
    victim = await account(nc, "victim")
    assert victim is not None and victim.frozen
    assert (victim.balance, victim.deposited, victim.withdrawn) == (70.0, FUNDS, 30.0)


async def _cli(server: NatsServer, role: Role, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from node.cli.auction import app; app()", *args,
        *cli_args(server, role), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_cli_deposits_through_the_treasury_as_an_admin_and_a_client_is_forbidden(
        treasury: Hosted, nats_server: NatsServer, nc: NATS) -> None:
    code, out, err = await _cli(nats_server, Role.ADMIN, "deposit", "bidder-1", "25",
                                "--op-id", "cli-1", "--json")
    assert code == 0, err
    assert json.loads(out)["balance"] == 25.0
    code, out, err = await _cli(nats_server, Role.CLIENT, "deposit", "bidder-1", "25",
                                "--op-id", "cli-2", "--json")
    assert code != 0 and json.loads(out)["error"]["code"] == "forbidden", (out, err)
    bidder = await account(nc, "bidder-1")
    assert bidder is not None and bidder.balance == 25.0


# ---- 2. negative and corrupt account records ---------------------------------------


async def test_corrupt_account_records_fail_only_their_own_operations(
        connect: Connect, nc: NATS, nats_server: NatsServer) -> None:
    accounts = await open_bucket(nc.jetstream(), S.bucket("accounts"))
    book = Ledger(accounts)
    await accounts.put("junk", b"\xc1 not msgpack")  # only nodes may write: a node did
    await accounts.put("negative", codec.encode(
        {"owner": "negative", "balance": 10.0, "holds": {"a-1": -1e9}}))
    await accounts.put("overheld", codec.encode(
        {"owner": "overheld", "balance": 10.0, "holds": {"a-1": 8.0, "a-2": 8.0}}))
    await accounts.put("foreign", codec.encode({"owner": "honest", "balance": 1e9}))
    for owner, reason in (("negative", "invalid"), ("overheld", "invalid"),
                          ("foreign", "foreign"), ("junk", "undecodable")):
        before = count(SKIPPED, "accounts", reason)
        with pytest.raises(BrokerError) as info:
            await book.reserve(owner, "a-3", 1.0)
        assert info.value.code == "malformed" and info.value.details["owner"] == owner
        assert count(SKIPPED, "accounts", reason) == before + 1

    # An auction between honest parties settles meanwhile.
    hosted = Hosted(await connect(Role.NODE))
    try:
        await hosted.add(AuctioneerAgent("auc", sweep_ms=60_000))
        await hosted.add(BidderAgent("b1", value=10.0))
        await hosted.add(BidderAgent("b2", value=20.0))
        for who in ("b1", "b2"):
            await book.deposit(who, FUNDS, f"fund-{who}")
        alice = await connect(Role.CLIENT, user="alice")
        result = await run_auction(alice, {"type": "vickrey", "participants": ["b1", "b2"],
                                           "duration_ms": 5000}, subjects=S)
        assert result["settled"] and result["winner"] == "b2", result
    finally:
        await hosted.stop_all()
    b2, seller = await book.account("b2"), await book.account("alice")
    assert b2 is not None and seller is not None
    assert (b2.balance, b2.reserved, seller.balance) == (FUNDS - 10.0, 0.0, 10.0)

    # The CLI lists them as corrupt rows; the audit names them and does not crash.
    code, out, err = await _cli(nats_server, Role.OBSERVER, "accounts", "--json")
    assert code == 0, err
    rows = {r["owner"]: r for r in json.loads(out)}
    assert set(rows) == {"junk", "negative", "overheld", "foreign", "b1", "b2", "alice"}
    assert all("corrupt" in rows[k] for k in ("junk", "negative", "overheld", "foreign"))
    assert rows["b2"]["balance"] == FUNDS - 10.0 and "corrupt" not in rows["b2"]
    code, out, err = await _cli(nats_server, Role.OBSERVER, "audit", "--json")
    report = json.loads(out)
    assert code == 0, report["problems"]
    assert report["unusable"] == {f"accounts/{k}": "corrupt" for k in
                                  ("junk", "negative", "overheld")} | {
        "accounts/foreign": "foreign"}
    code, out, err = await _cli(nats_server, Role.OBSERVER, "accounts")
    assert code == 0 and "corrupt" in out and "Traceback" not in err


# ---- 3. a forged acked record, taken over by the sweeper -----------------------------


def _ack(aid: str, bidder: str, total: float) -> bytes:
    return codec.encode({"auction_id": aid, "bidder": bidder, "accepted": True,
                         "total": total, "reason": None})


@pytest.mark.parametrize(("evidence", "refusal"), [
    ("none", "no_hold"),                   # the victim never bid: no hold, no evidence
    ("held_none", "no_evidence"),          # a hold, but no signed acknowledgement
    ("mallory", "not_the_payer"),          # the ack is mallory's own signature
    ("mallory_for_victim", "unauthorized"),  # a client may not speak for someone else
    ("honest", None),                      # control: the victim's own ack settles
])
async def test_a_forged_acked_record_does_not_debit_an_agent_that_never_agreed(
        evidence: str, refusal: str | None, connect: Connect, nc: NATS) -> None:
    aid = f"forged-{evidence.replace('_', '-')}"
    book = await ledger(nc)
    await book.deposit("victim", FUNDS, "fund-victim")
    if evidence != "none":
        await book.reserve("victim", aid, PRICE, taken_ms=0, by="dead-auc", lease=0)
    record = await record_for(nc, aid, "victim", Stage.ACKED)
    ack_subject = "_INBOX.anything.1-0"
    if evidence in ("mallory", "mallory_for_victim"):
        mallory = await connect(Role.CLIENT, user="mallory")
        signer = identity.identity_of(mallory).signer
        assert signer is not None
        data = _ack(aid, "victim", PRICE)
        for_whom = "victim" if evidence == "mallory_for_victim" else None
        act = SignedAct.of(ack_subject, data, signer.headers(ack_subject, data, for_whom))
        record = record.model_copy(update={"ack_evidence": {"victim": act}})
    elif evidence == "honest":  # the victim's node signs for it (what its runtime does)
        data = _ack(aid, "victim", PRICE)
        act = SignedAct.of(ack_subject, data,
                           identity.act_headers(nc, ack_subject, data, "victim"))
        record = record.model_copy(update={"ack_evidence": {"victim": act}})
    auctions = await open_bucket(nc.jetstream(), S.bucket("auctions"))
    await auctions.put(aid, codec.encode(record))  # only nodes write buckets
    before = count(settle.UNVERIFIABLE, refusal) if refusal else 0.0

    hosted = await sweeper(connect)
    try:
        final = await watch_record(nc, aid, lambda r: r.terminal, 15)
    finally:
        await hosted.stop_all()
    victim, mallory_acc = await book.account("victim"), await book.account("mallory")
    assert victim is not None
    if refusal is None:
        assert final.stage is Stage.SETTLED
        assert (victim.balance, victim.reserved) == (FUNDS - PRICE, 0.0)
        assert mallory_acc is not None and mallory_acc.balance == PRICE
        return
    assert final.stage is Stage.FAILED and refusal in (final.failure or "")
    assert (victim.balance, victim.reserved, victim.paid) == (FUNDS, 0.0, 0.0)
    assert mallory_acc is None  # the "seller" got nothing
    assert count(settle.UNVERIFIABLE, refusal) == before + 1


# ---- 4. a debit without a hold -----------------------------------------------------


async def test_a_debit_without_a_hold_for_that_auction_is_refused(nc: NATS) -> None:
    """A debit needs a bucket write (a node); even a node debits only escrow."""
    book = await ledger(nc)
    await book.deposit("victim", FUNDS, "fund-victim")
    await book.reserve("victim", "a-real", 5.0)
    for aid, amount, refusal in (("a-none", PRICE, "no_hold"),
                                 ("a-real", PRICE, "hold_too_small")):
        with pytest.raises(BrokerError) as info:
            await book.debit("victim", aid, amount)
        assert info.value.code == "rejected" and info.value.details["refusal"] == refusal
    victim = await book.account("victim")
    assert victim is not None and (victim.balance, victim.reserved) == (FUNDS, 5.0)


# ---- 5. one corrupt auction record must not abort every sweep ------------------------


async def test_corrupt_auction_records_are_skipped_and_the_others_swept(
        connect: Connect, nc: NATS) -> None:
    auctions = await open_bucket(nc.jetstream(), S.bucket("auctions"))
    # Stage and heartbeat read fine (the sweep tries to take it over); the rest is junk.
    await auctions.put("a-corrupt", codec.encode(
        {"auction_id": "a-corrupt", "stage": "acked", "heartbeat_ms": 0, "state": 7}))
    await auctions.put("a-garbage", b"\xc1\xc1 not a record")
    orphan = await record_for(nc, "a-orphan", "b1", Stage.CLOSED, bid=False)
    await auctions.put("a-orphan", codec.encode(orphan))  # an honest auction, owner dead
    before = count(RECONCILE_SKIPPED, "auctions", "corrupt")

    hosted = await sweeper(connect)
    try:
        final = await watch_record(nc, "a-orphan", lambda r: r.terminal, 15)
        # Both were met before the orphan was driven on (the sweep screens and takes
        # over in one pass, before the takeover's own task runs).
        assert count(RECONCILE_SKIPPED, "auctions", "corrupt") == before + 2
    finally:
        await hosted.stop_all()
    assert final.stage is Stage.UNSOLD and final.takeovers == 1
