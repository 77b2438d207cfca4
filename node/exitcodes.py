"""What every exit status of ``broker-agents`` means: its commands and the node daemon."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit status of every ``broker-agents`` command and of ``node run``."""

    OK = 0
    # It ran and the outcome is an error: an error reply, NATS unreachable, a node whose
    # root supervisor gave up or that reached no NATS server within
    # ``nats.initial_connect_timeout``, a chaos scenario that found a violation.
    FAILURE = 1
    # Nothing was tried: bad arguments, request JSON or node config (click's own usage
    # errors exit 2 as well).
    USAGE = 2
    CONFIG = 2
    # A node daemon forced out by a second SIGINT/SIGTERM (128 + SIGINT), whatever the
    # signal. A first one always ends in OK (or FAILURE if the node had given up).
    FORCED = 130
