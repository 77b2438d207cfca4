from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from node.config import ConfigError, load_config

EXAMPLE = Path(__file__).parents[3] / "config" / "node.example.toml"


def test_example_config_is_valid() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.node.id == "node-1"
    assert cfg.agents[0].cls == "broker_agents.samples:EchoAgent"
    assert cfg.agents[0].count == 2


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BA_NODE__ID", "from-env")
    monkeypatch.setenv("BA_NATS__SERVERS", '["nats://10.0.0.1:4222"]')
    cfg = load_config(EXAMPLE)
    assert cfg.node.id == "from-env"
    assert cfg.nats.servers == ["nats://10.0.0.1:4222"]


def test_bad_value_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[http]\nport = "eighty"\n[[agents]]\nclass = "nocolon"\ncount = 0\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "http.port" in text
    assert "agents.0.class" in text and "package.module:ClassName" in text
    assert "agents.0.count" in text


def test_unknown_key_is_rejected_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("[node]\nshutdown_timout = 3\n")
    with pytest.raises(ConfigError, match=r"node\.shutdown_timout"):
        load_config(path)


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[node\nid = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


def test_cli_prints_field_error_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[supervisor]\nstrategy = \"one_for_some\"\n")
    result = CliRunner().invoke(app, ["node", "run", "--config", str(path)])
    assert result.exit_code == 2
    assert "supervisor.strategy" in result.output
    assert "Traceback" not in result.output


def test_service_settings_are_checked_at_load_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "services.toml"
    path.write_text('[services.registry]\nheartbeat_interval = 5.0\nwindow = 1.0\n'
                    '[services.consensus]\ngroups = [{ name = "g", members = ["a", "a"] },'
                    ' { name = "h", members = ["a"], state_machine = "nonesuch" }]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "services.registry" in text and "below window" in text
    assert "services.consensus.groups.0.members" in text and "distinct" in text
    assert "services.consensus.groups.1.state_machine" in text and "nonesuch" in text


def test_an_unknown_service_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown service 'telepathy'"):
        load_config(None, services={"telepathy": {}})


def test_registry_is_on_by_default_and_consensus_only_when_configured() -> None:
    cfg = load_config(None, services={"consensus": {"groups": [
        {"name": "variables", "members": ["n1"], "state_machine": "variables"}]}})
    assert cfg.services.registry.enabled and cfg.services.registry.window == 5.0
    assert cfg.services.consensus is not None
    assert cfg.services.consensus.groups[0].state_machine_path().endswith("raft_adapter:factory")
    assert load_config(None).services.consensus is None


def test_agent_kwargs_are_checked_against_the_class_settings_at_start() -> None:
    from node.hosting import build_specs

    engine = "broker_agents.variables.engine_agent:AdaptationEngineAgent"
    cfg = load_config(None, agents=[
        {"class": "broker_agents.samples:EchoAgent", "kwargs": {"resources": {"gpu": 1}}},
        {"class": engine, "kwargs": {"spaces": ["llm"], "seed": 3}}])
    assert len(build_specs(cfg, None, {})) == 2  # type: ignore[arg-type]
    for agents, field in [
        ([{"class": "broker_agents.samples:EchoAgent", "kwargs": {"bogus": 1}}],
         "agents.0.kwargs.bogus"),
        ([{"class": "broker_agents.samples:EchoAgent"},
          {"class": engine, "kwargs": {"spaces": 7}}], "agents.1.kwargs.spaces"),
        ([{"class": "broker_agents.samples:NoSuchAgent"}], "agents.0.class"),
    ]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            build_specs(load_config(None, agents=agents), None, {})  # type: ignore[arg-type]


COORD = "broker_agents.coord"


def test_coord_agent_kwargs_are_checked_at_start_naming_the_field() -> None:
    from node.demo import DEMO_AGENTS
    from node.hosting import build_specs

    voter, predictor = f"{COORD}.voter:VoterAgent", f"{COORD}.voter:PredictorAgent"
    coordinator = f"{COORD}.coordinator:CoordinatorAgent"
    candidate = f"{COORD}.candidates:RoleCandidateAgent"
    holder = f"{COORD}.candidates:LockHolderAgent"
    probe = "chaos.probe:ViewProbeAgent"
    good = [
        {"class": coordinator, "kwargs": {"discovery_ms": 50, "foreign": ["auction"]}},
        {"class": voter, "kwargs": {"rule": "keyword", "keywords": {"lunch": "pizza"},
                                    "default": "salad", "delay_ms": 10}},
        {"class": voter, "id": "grumpy", "kwargs": {"fail": "I refuse", "seed": 7}},
        {"class": predictor, "kwargs": {"value": 1.5}},
        {"class": f"{COORD}.pbft_replica:PbftReplicaAgent", "kwargs": {"fault": "forge"}},
        {"class": candidate, "kwargs": {"role": "scheduler", "ttl_ms": 600}},
        {"class": holder, "kwargs": {"lock": "db", "ttl_ms": 30_000}},
        {"class": probe, "id": "probe-n1"},
        *[a for node in DEMO_AGENTS for a in node if a["class"].startswith(COORD)],
    ]
    assert len(build_specs(load_config(None, agents=good), None, {})) == len(good)  # type: ignore[arg-type]
    for bad, field in [
        ({"class": voter, "kwargs": {"rule": "loudest"}}, "rule"),
        ({"class": voter, "kwargs": {"delay_ms": -1}}, "delay_ms"),
        ({"class": predictor, "kwargs": {"hook": "no_colon"}}, "hook"),
        ({"class": coordinator, "kwargs": {"max_inflight": 0}}, "max_inflight"),
        ({"class": coordinator, "kwargs": {"discovery_ms": 0}}, "discovery_ms"),
        ({"class": candidate, "kwargs": {"ttl_ms": -1}}, "ttl_ms"),
        ({"class": holder, "kwargs": {"lock": "a.b"}}, "lock"),
        ({"class": holder, "kwargs": {"role": "scheduler"}}, "role"),  # a candidate's key
        ({"class": probe, "kwargs": {"window": 1}}, "window"),
    ]:
        agents = [{"class": "broker_agents.samples:EchoAgent"}, bad]
        with pytest.raises(ConfigError, match=rf"agents\.1\.kwargs\.{field}\b"):
            build_specs(load_config(None, agents=agents), None, {})  # type: ignore[arg-type]


def test_each_agent_gets_the_node_quota_and_budget_unless_its_limits_say_otherwise(
        tmp_path: Path) -> None:
    from broker_agents.core.supervision import OnExhausted
    from broker_agents.quota import AgentQuota
    from node.hosting import build_specs

    path = tmp_path / "limits.toml"
    path.write_text(
        "[supervisor]\nmax_restarts = 4\nperiod = 30.0\n"
        "[agent_limits]\nrate = 500\nburst = 50\n"
        "[[agents]]\nclass = \"broker_agents.samples:EchoAgent\"\nid = \"plain\"\n"
        "[[agents]]\nclass = \"broker_agents.samples:EchoAgent\"\nid = \"exposed\"\n"
        "[agents.limits]\nrate = 10\nmax_pending_msgs = 0\nmax_restarts = 1\n"
        "on_exhausted = \"stop_node\"\n")
    cfg = load_config(path)
    plain, exposed = build_specs(cfg, None, {})  # type: ignore[arg-type]
    assert (plain.max_restarts, plain.period, plain.on_exhausted) == (
        4, 30.0, OnExhausted.STOP_AGENT)
    assert (exposed.max_restarts, exposed.period, exposed.on_exhausted) == (
        1, 30.0, OnExhausted.STOP_NODE)
    assert plain.factory().quota == AgentQuota(rate=500, burst=50)  # type: ignore[attr-defined]
    assert exposed.factory().quota == AgentQuota(  # type: ignore[attr-defined]
        rate=10, burst=50, max_pending_msgs=0)


def test_defaults_are_safe() -> None:
    from broker_agents.core.supervision import OnExhausted

    cfg = load_config(None)
    assert cfg.supervisor.on_exhausted is OnExhausted.STOP_AGENT  # one agent, not the node
    limits = cfg.agent_limits
    assert limits.rate > 0 and limits.max_pending_msgs > 0 and limits.max_pending_bytes > 0


def test_bad_limits_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        "[agent_limits]\nburst = 0\n[supervisor]\non_exhausted = \"panic\"\n"
        "[[agents]]\nclass = \"broker_agents.samples:EchoAgent\"\n"
        "[agents.limits]\nrate = -1\nmax_restart = 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    for field in ("agent_limits.burst", "supervisor.on_exhausted", "agents.0.limits.rate",
                  "agents.0.limits.max_restart"):
        assert field in text
