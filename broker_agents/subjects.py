"""The subject and bucket scheme, in one place, under one configurable prefix.

    <p>.agent.<agent_id>              an agent's inbox
    <p>.cap.<capability>              any one agent with the capability (queue group)
    <p>.fanout                        one ask to many agents: every node delivers it to the
                                      participants it hosts (nodes only; broker_agents.fanout)
    <p>.coord.<protocol>              external coordination requests (request/reply)
    <p>.raft.<group>.<member>         consensus traffic to one member
    <p>.auction.<id>.<step>           auction choreography
    <p>.vote.<id>.<step>              voting choreography
    <p>.node.<node_id>.<what>         node control and heartbeats
    <p>.handover.<node_id>            a drained node asks another to start one of its agents
                                      (nodes only)
    <p>.admin.<operation>...          privileged operations (admins and nodes; roles.py
                                      ADMIN_OPERATIONS): membership.<group>[.<member>],
                                      drain.<node>, features.<verb>
    <p>.events.<kind>...              events
    <p>.events.variables.<space>      a committed change of a variable space (full values)
    <p>.events.adaptation.<space>     one adaptation step (the engine's explanation)
    <p>.variables.<space>.feedback    feedback for a space's engine (request/reply or publish)
"""

from __future__ import annotations

from dataclasses import dataclass

from broker_agents.core.tokens import TOKEN


def check_token(value: str, what: str) -> str:
    """Subject tokens may not contain dots, wildcards or whitespace."""
    if not TOKEN.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid subject token (letters, digits, '_' and '-')"
        )
    return value


@dataclass(frozen=True)
class Subjects:
    prefix: str = "ba"

    def agent(self, agent_id: str) -> str:
        return f"{self.prefix}.agent.{agent_id}"

    def fanout(self) -> str:
        return f"{self.prefix}.fanout"

    def cap(self, capability: str) -> str:
        return f"{self.prefix}.cap.{capability}"

    def cap_queue(self, capability: str) -> str:
        return f"{self.prefix}-cap-{capability}"

    def coord(self, protocol: str) -> str:
        return f"{self.prefix}.coord.{protocol}"

    def raft(self, group: str, *parts: str) -> str:
        return ".".join((self.prefix, "raft", group, *parts))

    def auction(self, auction_id: str, *parts: str) -> str:
        return ".".join((self.prefix, "auction", auction_id, *parts))

    def vote(self, vote_id: str, *parts: str) -> str:
        return ".".join((self.prefix, "vote", vote_id, *parts))

    def node(self, node_id: str, *parts: str) -> str:
        return ".".join((self.prefix, "node", node_id, *parts))

    def handover(self, node_id: str) -> str:
        return f"{self.prefix}.handover.{node_id}"

    def admin(self, *parts: str) -> str:
        return ".".join((self.prefix, "admin", *parts))

    def events(self, *parts: str) -> str:
        return ".".join((self.prefix, "events", *parts))

    def variable_changes(self, space: str = "*") -> str:
        """Change events of one variable space (``*``: every space)."""
        return self.events("variables", _space_or_any(space))

    def adaptation_steps(self, space: str = "*") -> str:
        """The adaptation engine's explained steps for one space (``*``: every space)."""
        return self.events("adaptation", _space_or_any(space))

    def variable_feedback(self, space: str) -> str:
        return f"{self.prefix}.variables.{check_token(space, 'space')}.feedback"

    def registry(self, *parts: str) -> str:
        return ".".join((self.prefix, "registry", *parts))

    def bucket(self, concern: str) -> str:
        """KV bucket per concern: agents, nodes, accounts, reputation, auctions, variables."""
        return f"{self.prefix}_{concern}"


def _space_or_any(space: str) -> str:
    return space if space == "*" else check_token(space, "space")
