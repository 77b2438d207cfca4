"""Cluster-wide adaptive variables over NATS: the IO layer around ``core.variables``.

- ``raft_adapter.VariablesRaftAdapter``: the variables core as a Raft state machine
  (``state_machine = "variables"``)
- ``client.Variables``: define/set/freeze/get/history/feedback through the group
- ``acts.proposal``: a command as a signed act (its signer is its actor; the rules are
  ``core.variables.acts``)
- ``readmodel.ReadModel``: local cached values, updated by change events within milliseconds
- ``publisher.ChangePublisher``: members publish applied changes on the events subject
- ``engine_agent.AdaptationEngineAgent``: turns feedback into committed values on the leader
"""
