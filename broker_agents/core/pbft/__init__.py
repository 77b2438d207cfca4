"""PBFT core: signed pre-prepare/prepare/commit with view change, pure and tick-driven."""
