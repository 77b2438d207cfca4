"""The auctioneer agent: serves ``<p>.coord.auction`` and runs auctions to the end.

Any auctioneer may take a request (queue group). It resolves participants, stores the new
auction record with ``create`` (so one id is one auction), drives it through the core and
the post-close steps, publishes the result on ``<p>.auction.<id>.result`` and replies.

A sweeper watches the auctions bucket: a record that is not finished and whose owner has
not renewed its lease for ``lease_ms`` is taken over with a CAS (owner, heartbeat) and
driven on from its stored stage. Two auctioneers cannot both win that CAS, and the loser's
next write fails, so it stops before doing anything else.

Escrow is reconciled (``reconcile.py``) at every sweep, and for the one auction after a
takeover or an abort: a hold whose auction is terminal, or unknown after
``orphan_grace_ms``, is released exactly once.

Acts are bound to their signers (``broker_agents.identity``, ``core.auction.acts``): the
seller of an auction is its authenticated requester (a node or an admin may name another),
a pushed bid's bidder is its signer, and a reputation report's reporter is its signer, a
counterparty of the settled auction, once per auction. The sweeper also decays stored
reputation scores every ``reputation_decay_ms``.

Config kwargs: ``AuctioneerSettings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from pydantic import Field, ValidationError

from broker_agents import codec, identity
from broker_agents.agent import Agent, AgentSettings
from broker_agents.auction import metrics, settle
from broker_agents.auction.audit import DEFAULT_GRACE_MS, usable_record
from broker_agents.auction.driver import TAKEN_OVER, AuctionDriver, LeaseLost, bound_bid
from broker_agents.auction.host import AuctionHost
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.messages import (
    AuctionRequest,
    ReportRequest,
    build_config,
    parse_request,
    validation_error,
)
from broker_agents.auction.reconcile import RECORDS_PER_YIELD, Reconciler
from broker_agents.auction.records import TERMINAL, AuctionRecord, Stage, peek_lease
from broker_agents.clock import wall_ms
from broker_agents.core import auction as core
from broker_agents.core import reputation
from broker_agents.core.auction.acts import seller_of
from broker_agents.core.errors import BrokerError, ErrorCode, RemoteProtocolError
from broker_agents.core.identity import Principal, Unauthorized
from broker_agents.discovery import Discovery, registry_finder
from broker_agents.kv import is_cas_conflict, open_bucket
from broker_agents.kvmirror import KvMirror
from broker_agents.reply import respond
from broker_agents.reputation import ReputationBook, counted_report

_ids = itertools.count(1)
_prefix = os.urandom(3).hex()


def new_auction_id() -> str:
    return f"a-{wall_ms():x}-{_prefix}-{next(_ids)}"


class AuctioneerSettings(AgentSettings):
    lease_ms: int = Field(default=3000, ge=1, description="an auction's lease: a record not "
                          "renewed for this long is taken over by another auctioneer")
    sweep_ms: float | None = Field(default=None, gt=0,
                                   description="sweep period (default: lease_ms / 2)")
    discovery_ms: float = Field(default=250, gt=0, description="participant discovery time")
    orphan_grace_ms: int = Field(default=DEFAULT_GRACE_MS, ge=0, description="a hold of an "
                                 "unknown auction is released after this long")
    reputation_decay_ms: float = Field(default=60_000, gt=0, description="how often the "
                                       "sweeper rewrites stored reputation scores that "
                                       "decay has moved")
    reputation_decay_batch: int = Field(default=100, ge=0, description="at most this many "
                                        "reputation records rewritten per decay pass")


class AuctioneerAgent(Agent):
    capabilities = ["auctioneer"]
    Settings = AuctioneerSettings

    async def on_start(self) -> None:
        ctx = self.ctx
        self.decay_s = float(self.config.get("reputation_decay_ms", 60_000)) / 1000
        self.decay_batch = int(self.config.get("reputation_decay_batch", 100))
        self._decayed_at = 0.0
        self.lease_ms = int(self.config.get("lease_ms", 3000))
        self.sweep_s = float(self.config.get("sweep_ms", self.lease_ms / 2)) / 1000
        self.discovery = Discovery(ctx.nc, ctx.subjects.auction, registry_finder(ctx.services),
                                   float(self.config.get("discovery_ms", 250)) / 1000)
        js, sub = ctx.js, ctx.subjects
        auctions = await open_bucket(js, sub.bucket("auctions"))
        accounts = await open_bucket(js, sub.bucket("accounts"))
        rep = await open_bucket(js, sub.bucket("reputation"))
        self.mirrors = [KvMirror(accounts, sub.bucket("accounts")),
                        KvMirror(rep, sub.bucket("reputation")),
                        KvMirror(auctions, sub.bucket("auctions"))]
        for mirror in self.mirrors:
            await mirror.start()
        self.host = AuctionHost(
            nc=ctx.nc, subjects=sub, owner=self.agent_id, auctions=auctions,
            ledger=Ledger(accounts, self.mirrors[0]),
            reputation=ReputationBook(rep, self.mirrors[1]),
            accounts_mirror=self.mirrors[0], reputation_mirror=self.mirrors[1],
            lease_ms=self.lease_ms, log=ctx.log)
        self.reconciler = Reconciler(
            self.host.ledger, auctions, self.mirrors[0], self.mirrors[2],
            int(self.config.get("orphan_grace_ms", DEFAULT_GRACE_MS)), ctx.log)
        self.live: dict[str, AuctionDriver] = {}
        self._seen_terminal: dict[str, int] = {}
        queue = f"{sub.prefix}-auctioneers"
        self._subs = [
            await ctx.nc.subscribe(sub.coord("auction"), queue=queue, cb=self._on_request),
            await ctx.nc.subscribe(sub.auction("*", "bid"), queue=f"{queue}-bids",
                                   cb=self._on_orphan_bid),
        ]
        await ctx.nc.flush()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(),
                                                                name="auction-sweeper")

    async def on_stop(self) -> None:
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        for s in self._subs:
            with contextlib.suppress(Exception):
                await s.unsubscribe()
        for mirror in self.mirrors:
            await mirror.stop()

    # -- requests ----------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        self.ctx.spawn(self._serve(msg), name="auction-request")

    async def _serve(self, msg: Msg) -> None:
        as_json = codec.is_json(msg.data, msg.headers)
        try:
            principal = identity.authenticate(self.ctx.nc, msg.subject, msg.data,
                                              msg.headers, component="auctioneer")
            payload = codec.decode(msg.data, msg.headers, as_json)
            op = payload.get("op", "run") if isinstance(payload, dict) else "run"
            if op == "report":
                reply: Any = await counted_report(self._report(payload, principal))
            elif op == "run":
                reply = await self._run(self._bound(parse_request(payload), principal))
            else:
                raise RemoteProtocolError(ErrorCode.VALIDATION,
                                          f"invalid auction request: op: unknown op {op!r}",
                                          {"field": "op", "known": ["run", "report"]})
        except BrokerError as exc:
            reply = exc.to_payload()
        except nats.errors.Error as exc:  # NATS/JetStream trouble (a cut, a leader change)
            self.ctx.log.warning("auction request hit NATS trouble", error=repr(exc))
            reply = BrokerError(ErrorCode.UNAVAILABLE, f"{type(exc).__name__}: {exc}"
                                ).to_payload()
        except Exception as exc:
            self.ctx.log.error("auction request failed", error=repr(exc), exc_info=exc)
            reply = BrokerError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}").to_payload()
        await respond(self.ctx.nc, msg.reply, reply, as_json, component="auctioneer")

    def _bound(self, request: AuctionRequest, principal: Principal | None) -> AuctionRequest:
        """The request with its seller bound to the requester (``acts.seller_of``)."""
        required = identity.identity_of(self.ctx.nc).authenticator.required
        try:
            seller = seller_of(principal, request.seller, required=required)
        except Unauthorized as exc:
            identity.refused("auctioneer", exc, field="seller")
            raise
        return request.model_copy(update={"seller": seller})

    async def _participants(self, request: AuctionRequest) -> list[str]:
        ids = await self.discovery.resolve(request, required=False)
        ids = [i for i in ids if i != request.seller][: request.max_participants]
        if request.min_reputation is not None:
            await self.mirrors[1].sync()
            book = self.host.reputation
            scores = {i: await book.score(i, fresh=False) for i in ids}
            ids = [i for i in ids if reputation.is_eligible(scores[i], request.min_reputation)]
        return ids

    async def _run(self, request: AuctionRequest) -> Any:
        aid = request.auction_id or new_auction_id()
        config = build_config(request, aid)
        invited = await self._participants(request)
        record, effects = AuctionDriver.new_record(self.host, request, config, invited,
                                                   wall_ms())
        driver = await AuctionDriver.create(self.host, record, effects)
        self.ctx.log.info("auction started", auction_id=aid, mechanism=str(request.type),
                          invited=len(invited))
        return await self._drive(driver)

    async def _drive(self, driver: AuctionDriver, taken_over: bool = False) -> Any:
        """Run to a terminal stage; the result (or why we stopped) as a reply payload."""
        aid = driver.aid
        self.live[aid] = driver
        nc, sub = self.ctx.nc, self.ctx.subjects
        bids = await nc.subscribe(sub.auction(aid, "bid"), cb=driver.on_bid)
        beat = asyncio.get_running_loop().create_task(driver.heartbeat())
        try:
            try:
                if driver.record.stage is Stage.OPEN:
                    await driver.run_open()
                await settle.finish(driver)
            except LeaseLost:
                return BrokerError(ErrorCode.CONFLICT, f"auction {aid} was taken over; its "
                                   f"result is published on {sub.auction(aid, 'result')}",
                                   {"auction_id": aid, TAKEN_OVER: True}).to_payload()
            except Exception as exc:
                self.ctx.log.error("auction driver failed", auction_id=aid, error=repr(exc),
                                   exc_info=exc)
                if not await self._abort(driver, f"{type(exc).__name__}: {exc}"):
                    return BrokerError(ErrorCode.UNAVAILABLE, f"auction {aid} was interrupted "
                                       "after acknowledgement; settlement resumes on takeover",
                                       {"auction_id": aid}).to_payload()
            if taken_over:  # the deposed driver may have taken a hold behind our back
                await self._reconcile("takeover", aid)
            result = settle.result_of(driver.record, driver.bids_ms)
            outcome = "sold" if result.settled else str(driver.record.stage)
            metrics.AUCTIONS.labels(str(result.mechanism), outcome).inc()
            metrics.DURATION.labels(str(result.mechanism)).observe(result.duration_ms / 1000)
            await nc.publish(sub.auction(aid, "result"), codec.encode(result))
            self.ctx.log.info("auction finished", auction_id=aid, status=result.status,
                              winner=result.winner, price=result.price)
            return result
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            with contextlib.suppress(Exception):
                await bids.unsubscribe()
            self.live.pop(aid, None)

    async def _abort(self, driver: AuctionDriver, why: str) -> bool:
        """End a failed auction cleanly (no award, holds released) unless already acked."""
        try:
            if driver.record.stage is Stage.OPEN:
                await driver.apply(core.Abort(driver.clock(), why))
            ended = await settle.fail(driver, why) or driver.record.terminal
        except LeaseLost:
            return False
        if ended:
            await self._reconcile("abort", driver.aid)
        return ended

    async def _reconcile(self, trigger: str, aid: str | None = None) -> None:
        """Release orphaned holds (of ``aid`` only, when given); never raises."""
        try:
            await self.reconciler.run(trigger, aid)
        except Exception as exc:
            self.ctx.log.warning("escrow reconcile failed", trigger=trigger, auction_id=aid,
                                 error=repr(exc))

    # -- reputation reports ------------------------------------------------------------

    async def _report(self, payload: Any, principal: Principal | None) -> Any:
        """A counterparty's report on a settled auction: the reporter is the signer."""
        try:
            req = ReportRequest.model_validate(payload)
        except ValidationError as exc:
            raise validation_error(exc, "report") from exc
        reporter = identity.bind_act(self.ctx.nc, principal, req.reporter, "reporter",
                                     component="reputation")
        if reporter is None:  # unsecured and unnamed
            raise RemoteProtocolError(ErrorCode.VALIDATION, "invalid report: reporter: "
                                      "name the reporter (or sign the report)",
                                      {"field": "reporter"})
        record = await self._load(req.auction_id)
        if record is None:
            raise BrokerError(ErrorCode.NOT_FOUND, f"no auction {req.auction_id}",
                              {"field": "auction_id"})
        if record.stage is not Stage.SETTLED or record.outcome is None:
            raise BrokerError(ErrorCode.REJECTED, f"auction {req.auction_id} is not settled",
                              {"stage": str(record.stage)})
        seller = record.request.seller
        pairs = [(w, seller) for w in record.outcome.winners]
        parties = next((p for p in pairs if set(p) == {reporter, req.subject}), pairs[0])
        settled = reputation.SettledAuction(auction_id=record.auction_id,
                                            task_id=record.auction_id, parties=parties)
        book = self.host.reputation
        if req.violation is not None:
            new = await book.violation(req.subject, reporter, req.violation, settled)
        else:
            assert req.quality is not None and req.satisfaction is not None
            rep = reputation.Report(reporter=reporter, subject=req.subject,
                                    auction_id=req.auction_id, task_id=record.auction_id,
                                    quality=req.quality, satisfaction=req.satisfaction)
            new = await book.report(rep, settled)
        return {"agent": new.agent, "score": new.score, "reports": len(new.entries)}

    async def _load(self, aid: str) -> AuctionRecord | None:
        try:
            entry = await self.host.auctions.get(aid)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.InvalidKeyError):
            return None
        assert entry.value is not None
        return AuctionRecord.model_validate(codec.decode(entry.value,
                                                         max_depth=codec.STORED_MAX_DEPTH))

    async def _on_orphan_bid(self, msg: Msg) -> None:
        """A bid for an auction nobody here is driving: answer for finished/unknown ones."""
        aid = msg.subject.split(".")[-2]
        if aid in self.live or not msg.reply:
            return
        as_json = codec.is_json(msg.data, msg.headers)
        try:
            bid = bound_bid(self.ctx.nc, msg, as_json)
            record = await self._load(aid)
            if record is None:
                raise BrokerError(ErrorCode.NOT_FOUND, f"no auction {aid}", {"auction_id": aid})
            if not record.terminal:
                return  # its owner's own subscription answers
            _, effects = core.step(record.state, core.BidReceived(bid, wall_ms()))
            reply = next(e.to_error_payload() for e in effects
                         if isinstance(e, core.BidRejected))
        except BrokerError as exc:
            reply = exc.to_payload()
        await respond(self.ctx.nc, msg.reply, reply, as_json, component="auctioneer")

    # -- takeover ----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)  # sleep-ok: sweep period
            try:
                await self.sweep()
            except Exception as exc:
                self.ctx.log.warning("auction sweep failed", error=repr(exc))
            await self._decay()

    async def _decay(self) -> None:
        """Every ``reputation_decay_ms``: rewrite stored scores that time has moved."""
        now = asyncio.get_running_loop().time()
        if now - self._decayed_at < self.decay_s:
            return
        self._decayed_at = now
        try:
            await self.host.reputation.decay_stale(self.mirrors[1].values, self.decay_batch)
        except Exception as exc:
            self.ctx.log.warning("reputation decay failed", error=repr(exc))

    async def sweep(self) -> None:
        """Take over auctions whose lease lapsed, then reconcile escrow."""
        try:
            await self._take_over_lapsed()
        finally:
            await self._reconcile("sweep")

    async def _take_over_lapsed(self) -> None:
        now = wall_ms()
        for read, (key, (data, rev)) in enumerate(list(self.mirrors[2].values.items()), 1):
            if read % RECORDS_PER_YIELD == 0:  # let auctions in flight run between slices
                await asyncio.sleep(0)  # sleep-ok: a yield, not a wait
            if key in self.live or self._seen_terminal.get(key) == rev:
                continue
            lease = peek_lease(data)  # take_over validates the record it acts on
            if lease is None:
                continue
            stage, heartbeat_ms = lease
            if stage in TERMINAL:
                self._seen_terminal[key] = rev
            elif now - heartbeat_ms > self.lease_ms:
                await self.take_over(key)

    async def take_over(self, aid: str) -> bool:
        try:
            entry = await self.host.auctions.get(aid)
        except nats.js.errors.KeyNotFoundError:
            return False
        assert entry.value is not None and entry.revision is not None
        record = usable_record(aid, entry.value, entry.revision)  # corrupt: skipped, counted
        now = wall_ms()
        if record is None or aid in self.live or not record.lease_expired(now, self.lease_ms):
            return False
        mine = record.model_copy(update={"owner": self.agent_id, "heartbeat_ms": now,
                                         "takeovers": record.takeovers + 1})
        try:
            rev = await self.host.auctions.update(aid, codec.encode(mine), last=entry.revision)
        except Exception as exc:
            if is_cas_conflict(exc):
                return False
            raise
        metrics.TAKEOVERS.inc()
        self.ctx.log.warning("auction taken over", auction_id=aid, previous=record.owner,
                             stage=str(record.stage))
        driver = AuctionDriver(self.host, mine, rev)
        self.live[aid] = driver
        self.ctx.spawn(self._drive(driver, taken_over=True), name=f"auction-takeover-{aid}")
        return True
