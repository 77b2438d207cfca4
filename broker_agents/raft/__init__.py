"""The IO side of the Raft group: storage, the NATS driver, client, metrics.

Import the pieces from their modules (``broker_agents.raft.driver`` etc.); this package
init stays empty so the pure simulations do not pull in asyncio/nats.
"""
