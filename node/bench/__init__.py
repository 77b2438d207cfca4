"""``broker-agents bench <suite>``: our figures beside the raw NATS figure they build on.

One module per suite (``messaging``, ``registry``, ``consensus``, ``auction``,
``coordination``, ``variables``), each with a ``run_<suite>_bench`` coroutine that returns
one flat dict (the ``--json`` output). The shared pieces: ``stats`` (percentiles),
``harness`` (a local cluster or a fresh nats-server to run on, one checked request),
``fanout`` + ``responder`` (the raw scatter-gather baseline), ``proposals`` (raw
request/reply and pipelined proposals for the consensus-backed suites) and ``agents`` (the
agents the messaging suite hosts in node processes).

The benchmarks live in ``node`` because they start node daemons (``node.cluster``); the
library never imports them.
"""
