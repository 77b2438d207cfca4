"""Coordination protocol cores: voting, hierarchical, barrier, ensemble, selector."""
