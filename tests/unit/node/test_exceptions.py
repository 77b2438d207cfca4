"""Every exception the project raises is a BrokerError carrying an ErrorCode member."""

from __future__ import annotations

from broker_agents.core.errors import BrokerError, ErrorCode


def test_every_project_exception_is_a_broker_error_with_its_code() -> None:
    from broker_agents.agent import FatalAgentError
    from broker_agents.importer import ImportFromStringError
    from chaos.process import ProcessError
    from chaos.toxiproxy.api import ApiError
    from chaos.toxiproxy.toxics import LinkClose, ToxicError
    from node.config import ConfigError
    from node.embedded import NatsServerError
    from node.supervisor import ChildStartError, SupervisorGaveUp

    cases: list[tuple[BrokerError, ErrorCode]] = [
        (FatalAgentError("x"), ErrorCode.HANDLER_ERROR),
        (ImportFromStringError("x"), ErrorCode.NOT_IMPORTABLE),
        (ConfigError("x"), ErrorCode.CONFIG),
        (NatsServerError("x"), ErrorCode.UNAVAILABLE),
        (ChildStartError("x"), ErrorCode.START_FAILED),
        (SupervisorGaveUp("x"), ErrorCode.RESTART_LIMIT),
        (ProcessError("x"), ErrorCode.START_FAILED),
        (ApiError("x", 404), ErrorCode.NOT_FOUND),
        (ToxicError("x"), ErrorCode.BAD_REQUEST),
        (LinkClose(reset=True), ErrorCode.CLOSED),
    ]
    for err, code in cases:
        assert isinstance(err, BrokerError) and err.code is code, err
    assert isinstance(ImportFromStringError("x"), ValueError)  # pydantic validators raise it
