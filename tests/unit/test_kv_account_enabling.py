"""``once_account_enabled``: only "JetStream not enabled for account" is retried, and only
until its deadline (a cluster's first requests can meet it; see ``broker_agents.kv``)."""

from collections.abc import Callable

import nats.js.errors as jse
import pytest

from broker_agents.kv import ACCOUNT_NOT_ENABLED, once_account_enabled


def _refusals(refused: int, error: Callable[[], Exception]) -> tuple[list[int], Callable]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= refused:
            raise error()
        return "created"

    return calls, call


def _not_enabled() -> Exception:
    return jse.ServiceUnavailableError(code=503, err_code=ACCOUNT_NOT_ENABLED,
                                       description="JetStream not enabled for account")


async def test_refusals_while_the_account_is_enabled_are_retried() -> None:
    calls, call = _refusals(3, _not_enabled)
    assert await once_account_enabled(call, timeout=5) == "created"
    assert len(calls) == 4


async def test_another_api_error_is_raised_at_once() -> None:
    calls, call = _refusals(1, lambda: jse.ServiceUnavailableError(
        code=503, err_code=10008, description="JetStream system temporarily unavailable"))
    with pytest.raises(jse.ServiceUnavailableError):
        await once_account_enabled(call, timeout=5)
    assert len(calls) == 1


async def test_an_account_that_never_gets_jetstream_fails_after_the_deadline() -> None:
    calls, call = _refusals(10**6, _not_enabled)
    with pytest.raises(jse.ServiceUnavailableError) as raised:
        await once_account_enabled(call, timeout=0.1)
    assert raised.value.err_code == ACCOUNT_NOT_ENABLED
    assert 1 < len(calls) < 20
