"""An add that did not finish leaves a learner; the admin's retry resumes it."""

from __future__ import annotations

from broker_agents.core.errors import ErrorCode
from broker_agents.core.raft import ChangeMembers, Failed, ProposalResult
from tests.unit.core.raft.test_membership import answer, elected


def test_an_add_interrupted_by_the_leaders_crash_resumes_on_retry() -> None:
    c, lead = elected()
    c.request(lead, ChangeMembers("add-1", "add", "m3"))  # m3 is not running yet
    c.run(5)
    assert "m3" in c.node(lead).learners  # the learner entry is in, the promotion is not
    c.crash(lead)
    c.settle()
    new = c.leader()
    assert new is not None and new != lead
    assert c.node(new).learners == {"m3"}
    c.add_node("m3")
    got = answer(c, c.request(new, ChangeMembers("add-2", "add", "m3")))
    assert isinstance(got, ProposalResult), got
    assert got.result == {"voters": ["m0", "m1", "m2", "m3"], "learners": []}
    # its learner entry was not appended twice: one learner config, then the voter one
    configs = [sorted(m.learners) for _i, m in c.node(new).log.configs.entries]
    assert configs == [["m3"], []], configs
    again = answer(c, c.request(new, ChangeMembers("add-3", "add", "m3")))
    assert isinstance(again, Failed) and again.code == ErrorCode.BAD_REQUEST
