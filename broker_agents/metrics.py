"""Prometheus metrics of the agent runtime and the NATS connection.

Label sets stay small and bounded: agent ids and message type names, never message ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from broker_agents.fastmetrics import FastCounter, FastHistogram

# Per-message metrics use the lock-free cells of fastmetrics (the hot path).
MESSAGES_IN = FastCounter(
    "ba_agent_messages_in_total", "Messages received by agents", ["agent", "kind"]
)
MESSAGES_OUT = FastCounter(
    "ba_agent_messages_out_total", "Messages sent by agents", ["agent", "kind"]
)
HANDLER_SECONDS = FastHistogram("ba_agent_handler_seconds", "Handler latency", ["agent", "type"])
HANDLER_ERRORS = Counter(
    "ba_agent_handler_errors_total", "Handlers that raised", ["agent", "type", "code"]
)
MALFORMED = Counter(
    "ba_agent_malformed_messages_total",
    "Messages rejected before reaching a handler", ["agent", "reason"],
)
REPLIES_REFUSED = Counter(
    "ba_replies_refused_total",
    "Replies replaced by an error reply: too_large (over the server's max payload) or "
    "internal (the result cannot be encoded); publish_failed when none could be sent",
    ["component", "reason"],
)
DUPLICATES = Counter(
    "ba_agent_duplicate_messages_total", "Redelivered messages answered from cache", ["agent"]
)
RESTARTS = Counter("ba_agent_restarts_total", "Agent restarts by a supervisor", ["agent"])
AGENTS_RUNNING = Gauge("ba_agents_running", "Agents currently running on this node")
NATS_CONNECTED = Gauge("ba_nats_connected", "1 while the NATS connection is up")
NATS_RECONNECTS = Counter("ba_nats_reconnects_total", "NATS reconnections")
NATS_DISCONNECTS = Counter("ba_nats_disconnects_total", "NATS disconnections")
SLOW_CONSUMER_DROPS = Counter(
    "ba_nats_slow_consumer_drops_total", "Messages dropped by nats-py for a slow consumer",
    ["subject_kind"],
)
NATS_ERRORS = Counter("ba_nats_errors_total", "Errors reported by the NATS client", ["kind"])
CLUSTER_CAS_UNSAFE = Gauge(
    "ba_nats_cluster_cas_unsafe",
    "1 when connected to a clustered JetStream older than 2.10 (CAS not serialized)")
NATS_INSECURE = Gauge(
    "ba_nats_insecure",
    "1 when this process reaches NATS without authentication or TLS (auth = 'none')")
NODE_HEALTHY = Gauge("ba_node_healthy", "1 while the node's root supervisor is healthy")
