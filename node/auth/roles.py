"""Roles as per-user subject permissions: node, client, admin, observer.

Every subject is under the configurable prefix ``p`` (default ``ba``), the scheme of
``broker_agents.subjects``. NATS wildcards are whole tokens, so a bucket's ``$KV`` and
``$JS.API`` subjects are listed per bucket (``BUCKET_CONCERNS``).

Inboxes are per user: ``_INBOX.<user>`` is the inbox prefix a user connects with
(nats-py's ``inbox_prefix``, ``nats --inbox-prefix``), and a user may subscribe under
its own prefix only, so nobody reads someone else's replies. Node daemons answer
requests, possibly long after they came in (a barrier, a Raft commit), so the node role
may publish to ``_INBOX.>``; the other roles answer only through ``allow_responses``.

- **node**: ``p.>`` (``p.fanout``, the node fan-out, is for nodes only: ``NODE_ONLY``);
  ``$JS.API.>`` (streams, consumers, KV buckets); ``$KV.<bucket>.>``
  of the prefix's buckets; ``$JS.ACK.>`` and ``$JS.FC.>`` (acks and flow control);
  replies to every ``_INBOX.>``; its own inbox.
- **client**: publishes only the public request subjects (``CLIENT_REQUESTS``),
  subscribes to its own inbox and to auction results; never ``$KV``, ``$JS`` or Raft
  peer subjects (``p.raft.<group>.<member>``).
- **admin** (treasury): the client's rights plus ``ADMIN_OPERATIONS``, the privileged
  requests (deposits, freezing, membership) that trust part 2 serves.
- **observer**: read-only, for dashboards: subscribes to events, auction progress and
  its inbox; publishes only requests that read (registry, Raft reads) and the JetStream
  reads a KV watch needs on the prefix's buckets. Caveat: creating a consumer lets the
  observer choose its delivery subject, which NATS does not check against its
  permissions; the messages delivered are the bucket's own entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from broker_agents.core.identity import ROLE_TAG
from broker_agents.core.identity import Role as Role  # re-exported: node.auth names roles here
from broker_agents.subjects import check_token

DEFAULT_PREFIX = "ba"

# Every KV bucket concern the code opens today (Subjects.bucket): registry, budgets,
# auctions, reputation, coordination, variables, feature flags, and the benchmark's raw
# baseline.
BUCKET_CONCERNS = ("agents", "nodes", "accounts", "reputation", "auctions", "leases",
                   "barriers", "variables", "features", "raw")

# What a client may send to a consensus group (``p.raft.<group>.<verb>``): a Raft member
# may not be named after one, or its peer subject would be a public one.
RAFT_CLIENT_VERBS = ("propose", "read")

# Public request subjects (suffixes under the prefix): what a client may publish.
CLIENT_REQUESTS = (
    "coord.*",               # coordination protocols (vote, auction, lock, barrier, ...)
    "registry.*",            # registry reads: get, list, count, find, query
    "agent.*",               # an agent's inbox
    "cap.*",                 # any one agent with a capability
    "raft.*.propose",        # a consensus group's proposals and reads (any member) ...
    "raft.*.read",
    "raft.*.*.propose",      # ... and through a known leader; never raft.<g>.<member>
    "raft.*.*.read",
    "auction.*.bid",         # bids to a running auction
    "variables.*.feedback",  # feedback for a variable space's adaptation engine
)

# Public subjects a client may subscribe to besides its inbox.
CLIENT_EVENTS = ("auction.*.result",)  # published by a successor auctioneer

# The privileged operations of the admin/treasury role (trust part 2 serves them).
ADMIN_OPERATIONS: dict[str, str] = {
    "treasury.deposit": "credit an account",
    "treasury.withdraw": "debit an account",
    "treasury.freeze": "freeze an account: no bids, holds or payments",
    "treasury.unfreeze": "unfreeze an account",
    "admin.variables.freeze": "freeze a variable against the adaptation engine",
    "admin.variables.unfreeze": "unfreeze a variable",
    "admin.membership.>": "read or change the members of a consensus group, or move its "
                          "leadership (admin.membership.<group>[.<member>])",
    "admin.drain.*": "drain a node: move its agents and Raft leaderships away (admin.drain.<node>)",
    "admin.features.*": "list, enable or disable a cluster-wide feature flag",
    "admin.roles.*": "grant or revoke an identity's role",
}

# Requests that only read, for the observer.
OBSERVER_REQUESTS = ("registry.*", "raft.*.read", "raft.*.*.read")

# What an observer may subscribe to besides its inbox.
OBSERVER_EVENTS = ("events.>", "auction.*.announce", "auction.*.closed", "auction.*.result")

# Never for clients or admins, whatever the allow lists say.
PRIVILEGED = ("$KV.>", "$JS.>", "$SYS.>")

# Subjects under the prefix only nodes publish and subscribe to: the node fan-out
# (``broker_agents.fanout``: an ask there reaches agents through their inbox path, so a
# client must neither inject one nor read the asks) and agent handover between nodes
# (``p.handover.<node>``: a drained node asks another to start one of its agents).
# Denied to the other roles explicitly, so that no future allow-list wildcard lets it
# through.
NODE_ONLY = ("fanout", "handover.>")



def inbox_prefix(user: str) -> str:
    """The inbox prefix ``user`` connects with: ``_INBOX.<user>``."""
    return f"_INBOX.{check_token(user, 'user name')}"


@dataclass(frozen=True)
class Permissions:
    """Publish and subscribe allow/deny lists, and whether replies are allowed."""

    pub_allow: tuple[str, ...]
    sub_allow: tuple[str, ...]
    pub_deny: tuple[str, ...] = ()
    sub_deny: tuple[str, ...] = ()
    allow_responses: bool = True

    def claims(self) -> dict[str, Any]:
        """The user JWT's ``pub``, ``sub`` and ``resp``. An empty allow list would mean
        "everything" in a JWT, so nothing allowed is written as a deny of ``>``."""
        out: dict[str, Any] = {"pub": _permission(self.pub_allow, self.pub_deny),
                                "sub": _permission(self.sub_allow, self.sub_deny)}
        if self.allow_responses:
            out["resp"] = {"max": 1, "ttl": 0}  # the server's defaults: 1 reply, 2 minutes
        return out


def _permission(allow: Sequence[str], deny: Sequence[str]) -> dict[str, list[str]]:
    if not allow:
        return {"deny": [">"]}
    out = {"allow": list(allow)}
    if deny:
        out["deny"] = list(deny)
    return out


def _under(prefix: str, suffixes: Iterable[str]) -> tuple[str, ...]:
    return tuple(f"{prefix}.{s}" for s in suffixes)


def _js_reads(stream: str) -> tuple[str, ...]:
    """The JetStream API calls that read one stream: info, gets, and a watch's consumer."""
    api = "$JS.API"
    return (f"{api}.STREAM.INFO.{stream}", f"{api}.STREAM.MSG.GET.{stream}",
            f"{api}.DIRECT.GET.{stream}", f"{api}.DIRECT.GET.{stream}.>",
            f"{api}.CONSUMER.CREATE.{stream}", f"{api}.CONSUMER.CREATE.{stream}.>",
            f"{api}.CONSUMER.INFO.{stream}.*", f"{api}.CONSUMER.DELETE.{stream}.*",
            f"$JS.FC.{stream}.>")


def permissions(role: Role, user: str, prefix: str = DEFAULT_PREFIX,
                buckets: Sequence[str] = BUCKET_CONCERNS) -> Permissions:
    """The subject permissions of ``user`` in ``role`` under ``prefix``."""
    check_token(prefix, "subject prefix")
    inbox = f"{inbox_prefix(user)}.>"
    bucket_names = [f"{prefix}_{check_token(b, 'bucket concern')}" for b in buckets]
    if role is Role.NODE:
        kv = tuple(f"$KV.{b}.>" for b in bucket_names)
        return Permissions(
            pub_allow=(f"{prefix}.>", "$JS.API.>", *kv, "$JS.ACK.>", "$JS.FC.>", "_INBOX.>"),
            sub_allow=(f"{prefix}.>", *kv, inbox))
    if role is Role.OBSERVER:
        reads = tuple(s for b in bucket_names for s in _js_reads(f"KV_{b}"))
        return Permissions(
            pub_allow=(*_under(prefix, OBSERVER_REQUESTS), "$JS.API.INFO", *reads),
            sub_allow=(*_under(prefix, OBSERVER_EVENTS), inbox),
            pub_deny=_under(prefix, NODE_ONLY), sub_deny=_under(prefix, NODE_ONLY),
            allow_responses=False)
    requests = _under(prefix, CLIENT_REQUESTS)
    if role is Role.ADMIN:
        requests += _under(prefix, ADMIN_OPERATIONS)
    node_only = _under(prefix, NODE_ONLY)
    return Permissions(pub_allow=requests, sub_allow=(*_under(prefix, CLIENT_EVENTS), inbox),
                       pub_deny=(*PRIVILEGED, *node_only), sub_deny=(*PRIVILEGED, *node_only))


def user_claims(role: Role, user: str, prefix: str = DEFAULT_PREFIX,
                buckets: Sequence[str] = BUCKET_CONCERNS) -> dict[str, Any]:
    """A user JWT's ``nats`` grants for ``role``: its permissions, and the role as a tag
    (``ba-role:<role>``), which is how a signed act's verifier learns the signer's role."""
    return {**permissions(role, user, prefix, buckets).claims(), "tags": [f"{ROLE_TAG}{role}"]}
