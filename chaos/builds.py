"""The "N+1" build of the rolling-upgrade test: what a next release changes, installed into
a node process before it starts (``python -m chaos.next_node node run``).

Version N is the code as it is. N+1 adds:

- a new Raft command kind, ``{"op": "incr", "key": k, "by": n}`` in the built-in KV state
  machine (``NextKVStateMachine``, registered under the same name "kv", so the node's
  config does not change with the build). N's machine rejects an unknown op
  deterministically, so an ``incr`` committed while one member runs N would leave that
  member's state different from the others' for ever: silent divergence. That is why it
  sits behind the cluster-wide feature flag ``demo-next`` (``FEATURE``), which is
  effective only while every registered node announces it; a client proposes ``incr``
  only while the flag is effective.
- a field its models add (``EXTRA_FIELD``): on every account it writes (the accounts
  bucket, read-modified-written by whichever auctioneer settles an auction, N or N+1) and
  on every bid answer its bidders send (read by N auctioneers). N must tolerate both and
  keep the account's through its own updates (``broker_agents.core.versioning``).
- the feature's registration in the build's supported set
  (``broker_agents.core.features.register_feature``, when the build has feature flags).

Rolling a node back to N after the feature was used needs the log past its last use
compacted on that node (N cannot apply the entries it would replay): disable the flag,
wait for the node's snapshot to cover the last ``incr``, then restart it on N.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from broker_agents.auction.messages import BidAnswer
from broker_agents.core.budget import Account
from broker_agents.core.raft.kvstore import KVStateMachine
from node.service_settings import register_state_machine

FEATURE = "demo-next"
EXTRA_FIELD = "demo_next"


class NextKVStateMachine(KVStateMachine):
    """The KV machine of N+1: every op of N, plus ``incr`` (an integer counter)."""

    __slots__ = ()

    def apply(self, command: Any) -> Any:
        if isinstance(command, dict) and command.get("op") == "incr":
            key = self._key(command)
            by = command.get("by", 1)
            if not isinstance(by, int) or isinstance(by, bool):
                raise ValueError("by must be an integer")
            current, _ = self.data.get(key, (0, 0))
            if not isinstance(current, int) or isinstance(current, bool):
                raise ValueError(f"{key!r} does not hold an integer")
            return self._write(key, current + by)
        return super().apply(command)


def features_available() -> bool:
    """Whether this code base has cluster-wide feature flags yet."""
    try:
        importlib.import_module("broker_agents.core.features")
    except ImportError:
        return False
    return True


def add_field(model: type[BaseModel], name: str, default: str) -> None:
    """Declare a new field on ``model`` in place, as N+1's source would (every module that
    imported the class sees it)."""
    model.model_fields[name] = FieldInfo.from_annotated_attribute(str, default)
    model.model_rebuild(force=True)


def install() -> None:
    """Make this process the N+1 build (call before the node loads its config)."""
    add_field(Account, EXTRA_FIELD, "N+1")
    add_field(BidAnswer, EXTRA_FIELD, "N+1")
    register_state_machine("kv", f"{__name__}:NextKVStateMachine")
    if features_available():
        features = importlib.import_module("broker_agents.core.features")
        features.register_feature(FEATURE)
