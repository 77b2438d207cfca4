"""The treasury agent: the only way money enters or leaves the ledger.

    <p>.treasury.deposit    {"op_id", "owner", "amount", "max_per_task"?}
    <p>.treasury.withdraw   {"op_id", "owner", "amount"}
    <p>.treasury.freeze     {"op_id", "owner"}     no new holds, no withdrawals
    <p>.treasury.unfreeze   {"op_id", "owner"}

Only the admin role may publish on these subjects (``node/auth/roles.py``,
``ADMIN_OPERATIONS``), so a client's request is refused by NATS itself (``forbidden``).
Each request must also be a signed act (``broker_agents.identity``) of an admin or a node:
one that arrives unsigned, mis-signed or signed by anyone else (say, a node speaking for
a client) is answered ``unauthorized``, counted in ``ba_unauthorized_total{component=
"treasury"}`` and logged at most once per window. Without creds (``--insecure``) nothing
is signed and nothing is required.

Each request carries an idempotency id (``op_id``): the account remembers the operations
it applied (``core.budget``), so a repeat changes nothing, and the agent answers a repeat
it still remembers with the first answer. Amounts are finite, above zero and at most
``max_amount``. Every request is counted in ``ba_treasury_requests_total{op,outcome}``.
Any number of treasury agents may run: they share a queue group, and every change is a
CAS on the account.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client import Counter
from pydantic import ConfigDict, Field, ValidationError, field_validator

from broker_agents import codec, identity
from broker_agents.agent import Agent, AgentSettings
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.moneywatch import MoneyWatch
from broker_agents.core.budget import Account
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Unauthorized
from broker_agents.core.tokens import TOKEN
from broker_agents.core.versioning import StrictVersionedModel, refusal
from broker_agents.kv import open_bucket
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog
from broker_agents.reply import respond
from broker_agents.subjects import Subjects
from broker_agents.transport import call

COMPONENT = "treasury"
OPERATIONS = ("deposit", "withdraw", "freeze", "unfreeze")
DEFAULT_MAX_AMOUNT = 1e12

REQUESTS = Counter("ba_treasury_requests_total",
                   "Treasury requests by operation and outcome (applied, duplicate, or the "
                   "error code of a refusal)", ["op", "outcome"])

_log = RateLimitedLog(get_logger(component=COMPONENT))


def subject(subjects: Subjects, op: str) -> str:
    """``<p>.treasury.<op>``: the request subject of one treasury operation."""
    if op not in OPERATIONS:
        raise ValueError(f"unknown treasury operation {op!r}")
    return f"{subjects.prefix}.treasury.{op}"


class TreasurySettings(AgentSettings):
    max_amount: float = Field(default=DEFAULT_MAX_AMOUNT, gt=0, allow_inf_nan=False,
                              description="the largest amount one deposit or withdrawal "
                              "may move")
    remembered: int = Field(default=4096, ge=0, description="how many first answers are "
                            "kept to answer a repeated op_id with (the ledger refuses the "
                            "repeat in any case)")


class TreasuryRequest(StrictVersionedModel):
    """One treasury operation on one account."""

    model_config = ConfigDict(frozen=True)

    op_id: str = Field(min_length=1, max_length=200)
    owner: str = Field(min_length=1, max_length=200)
    amount: float | None = Field(default=None, strict=True)
    max_per_task: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str) -> str:
        if not TOKEN.match(value):
            raise ValueError("must be an agent id (letters, digits, '_' and '-')")
        return value

    def checked(self, op: str, max_amount: float) -> TreasuryRequest:
        """Refuse what this operation cannot take: an amount that is missing, not finite,
        not above zero or above ``max_amount`` (money-moving operations), or any amount
        (freezing)."""
        moves = op in ("deposit", "withdraw")
        if not moves:
            if self.amount is not None or self.max_per_task is not None:
                raise _invalid("amount", f"{op} takes no amount")
            return self
        if op == "withdraw" and self.max_per_task is not None:
            raise _invalid("max_per_task", "withdraw takes no max_per_task")
        amount = self.amount
        if (amount is None or isinstance(amount, bool) or not math.isfinite(amount)
                or amount <= 0 or amount > max_amount):
            raise _invalid("amount", f"must be a finite number above 0 and at most "
                           f"{max_amount:g}", value=repr(amount))
        return self


def _invalid(field: str, problem: str, **details: Any) -> BrokerError:
    return BrokerError(ErrorCode.VALIDATION, f"invalid treasury request: {field}: {problem}",
                       {"field": field, **details})


def summary(account: Account, op_id: str, applied: bool) -> dict[str, Any]:
    """What the treasury answers: the account after the operation."""
    return {"owner": account.owner, "balance": account.balance, "reserved": account.reserved,
            "available": account.available, "max_per_task": account.max_per_task,
            "frozen": account.frozen, "op_id": op_id, "applied": applied}


class TreasuryAgent(Agent):
    """Serves ``<p>.treasury.*`` (see the module docstring)."""

    capabilities = ["treasury"]
    Settings = TreasurySettings

    async def on_start(self) -> None:
        ctx = self.ctx
        self.settings = TreasurySettings.model_validate(self.config)
        self.ledger = Ledger(await open_bucket(ctx.js, ctx.subjects.bucket("accounts")))
        self.money = MoneyWatch(self.ledger.kv, ctx.subjects.bucket("accounts"))
        await self.money.start()
        self._answers: OrderedDict[tuple[str, str, str], dict[str, Any]] = OrderedDict()
        queue = f"{ctx.subjects.prefix}-treasury"
        self._subs = [await ctx.nc.subscribe(subject(ctx.subjects, op), queue=queue,
                                             cb=self._on_request) for op in OPERATIONS]
        await ctx.nc.flush()

    async def on_stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self.money.stop()

    async def _on_request(self, msg: Msg) -> None:
        self.ctx.spawn(self._serve(msg), name="treasury-request")

    async def _serve(self, msg: Msg) -> None:
        op = msg.subject.rsplit(".", 1)[-1]
        as_json = codec.is_json(msg.data, msg.headers)
        try:
            self._authorize(msg)
            req = self._parse(op, msg)
            reply: Any = await self._apply(op, req)
        except BrokerError as exc:
            REQUESTS.labels(op, exc.code.value).inc()
            if not isinstance(exc, Unauthorized):  # those are logged by identity
                _log.warning((op, exc.code), "treasury.refused", op=op, code=exc.code.value,
                             error=exc.message[:200])
            reply = exc.to_payload()
        except Exception as exc:  # NATS trouble, a bug: answered, never a crash
            REQUESTS.labels(op, ErrorCode.INTERNAL.value).inc()
            _log.error((op, "internal"), "treasury.failed", op=op, error=repr(exc)[:300])
            reply = BrokerError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"[:300]
                                ).to_payload()
        await respond(self.ctx.nc, msg.reply, reply, as_json, component=COMPONENT)

    def _authorize(self, msg: Msg) -> None:
        """Only an admin's or a node's signed act, in its own name, moves money."""
        nc = self.ctx.nc
        principal = identity.authenticate(nc, msg.subject, msg.data, msg.headers,
                                          component=COMPONENT)
        identity.require_privileged(nc, principal, "a treasury request", component=COMPONENT,
                                    reason="not_treasury", own_name=True)

    def _parse(self, op: str, msg: Msg) -> TreasuryRequest:
        payload = codec.decode(msg.data, msg.headers)
        try:
            req = TreasuryRequest.model_validate(payload)
        except ValidationError as exc:
            newer = refusal(exc)
            if newer is not None:
                raise newer from exc
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "request"
            raise _invalid(where, str(first["msg"])) from exc
        return req.checked(op, self.settings.max_amount)

    async def _apply(self, op: str, req: TreasuryRequest) -> dict[str, Any]:
        key = (op, req.owner, req.op_id)
        first = self._answers.get(key)
        if first is not None:
            REQUESTS.labels(op, "duplicate").inc()
            return first
        before = await self.ledger.account(req.owner)
        if op == "deposit":
            assert req.amount is not None
            after = await self.ledger.deposit(req.owner, req.amount, req.op_id,
                                              req.max_per_task)
        elif op == "withdraw":
            assert req.amount is not None
            after = await self.ledger.withdraw(req.owner, req.amount, req.op_id)
        else:
            after = await self.ledger.set_frozen(req.owner, op == "freeze", req.op_id)
        applied = before is None or f"{op}:{req.op_id}" not in before.applied  # core.budget
        REQUESTS.labels(op, "applied" if applied else "duplicate").inc()
        answer = summary(after, req.op_id, applied)
        self._answers[key] = answer
        while len(self._answers) > self.settings.remembered:
            self._answers.popitem(last=False)
        self.ctx.log.info("treasury.applied", op=op, owner=req.owner, op_id=req.op_id,
                          amount=req.amount, applied=applied)
        return answer


async def treasury_request(nc: NATS, op: str, payload: dict[str, Any], *,
                           subjects: Subjects | None = None, timeout: float = 10.0,
                           as_json: bool = False) -> dict[str, Any]:
    """Ask the treasury (a signed act of ``nc``'s user); the answer, or ``BrokerError``."""
    subj = subject(subjects or Subjects(), op)
    return await call(nc, subj, codec.encode(payload, as_json=as_json), timeout,
                      what="the treasury")
