"""Each toxic's effect, measured on real sockets through our proxy."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from chaos.toxiproxy import ToxiproxyClient
from tests.chaos.toxiproxy.sockets import connect, recv_exactly, recv_until_eof


def roundtrip(sock: socket.socket, payload: bytes = b"x") -> float:
    started = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - started


@pytest.fixture
def echo(toxi: ToxiproxyClient, echo_addr: str) -> str:
    return str(toxi.create("echo", echo_addr)["listen"])


@pytest.fixture
def closing_addr() -> Iterator[str]:
    """An upstream that sends b"bye" and closes each connection at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.sendall(b"bye")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def test_latency_adds_at_least_the_configured_delay(toxi: ToxiproxyClient, echo: str) -> None:
    with connect(echo) as sock:
        baseline = roundtrip(sock)
        toxi.add_toxic("echo", "latency", latency=150)
        delayed = roundtrip(sock)
    assert delayed >= 0.150
    assert delayed - baseline >= 0.140


def test_latency_on_both_streams_adds_up(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "latency", stream="upstream", latency=80)
    toxi.add_toxic("echo", "latency", stream="downstream", latency=80)
    with connect(echo) as sock:
        assert roundtrip(sock) >= 0.160


def test_jitter_varies_the_delay_within_bounds(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "latency", latency=60, jitter=40)
    with connect(echo) as sock:
        samples = [roundtrip(sock) for _ in range(6)]
    assert all(0.019 <= s < 0.5 for s in samples), samples
    assert max(samples) - min(samples) > 0.005, samples


def test_latency_does_not_serialise_a_burst(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "latency", stream="upstream", latency=100)
    with connect(echo) as sock:
        started = time.monotonic()
        for _ in range(5):
            sock.sendall(b"y")
        assert recv_exactly(sock, 5) == b"yyyyy"
        assert time.monotonic() - started < 0.45


def test_bandwidth_limits_throughput(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "bandwidth", rate=50)  # 50 KB/s downstream
    payload = b"b" * 20_000
    with connect(echo) as sock:
        elapsed = roundtrip(sock, payload)
    assert elapsed >= 0.35  # 20 kB at 50 kB/s is 0.4 s


def test_limit_data_closes_after_n_bytes(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "limit_data", bytes=10)
    with connect(echo) as sock:
        sock.sendall(b"0123456789abcdef")
        assert recv_until_eof(sock) == b"0123456789"


def test_limit_data_zero_closes_on_first_byte(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "limit_data", stream="upstream", bytes=0)
    with connect(echo) as sock:
        sock.sendall(b"hello")
        assert recv_until_eof(sock) == b""


def test_reset_peer_resets_the_connection(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "reset_peer", stream="upstream", timeout=0)
    with connect(echo) as sock, pytest.raises(ConnectionResetError):
        sock.sendall(b"hello")
        sock.recv(10)


def test_reset_peer_waits_its_timeout(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "reset_peer", stream="upstream", timeout=200)
    with connect(echo) as sock:
        started = time.monotonic()
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        assert time.monotonic() - started >= 0.19


def test_timeout_zero_stalls_without_closing_until_removed(toxi: ToxiproxyClient,
                                                           echo: str) -> None:
    with connect(echo) as sock:
        assert roundtrip(sock) < 1.0
        toxi.add_toxic("echo", "timeout", timeout=0)
        sock.sendall(b"lost")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)  # nothing arrives, and the connection is not closed
        toxi.remove_toxic("echo", "timeout_downstream")
        sock.settimeout(5)
        assert roundtrip(sock, b"back") < 1.0


def test_timeout_closes_the_connection_after_its_timeout(toxi: ToxiproxyClient,
                                                         echo: str) -> None:
    with connect(echo) as sock:
        toxi.add_toxic("echo", "timeout", stream="upstream", timeout=200)
        started = time.monotonic()
        sock.sendall(b"dropped")
        assert recv_until_eof(sock) == b""
        assert 0.19 <= time.monotonic() - started < 2.0


def test_slow_close_delays_the_close(toxi: ToxiproxyClient, closing_addr: str) -> None:
    listen = toxi.create("closer", closing_addr)["listen"]
    with connect(listen) as sock:
        started = time.monotonic()
        assert recv_until_eof(sock) == b"bye"
        fast = time.monotonic() - started
    toxi.add_toxic("closer", "slow_close", delay=300)
    with connect(listen) as sock:
        started = time.monotonic()
        assert recv_until_eof(sock) == b"bye"
        slow = time.monotonic() - started
    assert fast < 0.25 and slow >= 0.29


def test_slicer_delivers_everything_in_delayed_slices(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "slicer", average_size=10, size_variation=5, delay=20_000)
    payload = bytes(range(100))
    with connect(echo) as sock:
        elapsed = roundtrip(sock, payload)
    # at most 100/5 = 20 slices, at least 100/15 -> 7 slices, 6 gaps of 20 ms
    assert elapsed >= 0.12


def test_toxicity_zero_never_applies(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "latency", latency=300, toxicity=0.0)
    with connect(echo) as sock:
        assert roundtrip(sock) < 0.25


def test_toxic_added_to_a_live_connection_applies_and_removal_lifts_it(
        toxi: ToxiproxyClient, echo: str) -> None:
    with connect(echo) as sock:
        toxi.add_toxic("echo", "latency", latency=120)
        assert roundtrip(sock) >= 0.12
        toxi.remove_toxic("echo", "latency_downstream")
        assert roundtrip(sock) < 0.1


def test_toxic_update_takes_effect(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.add_toxic("echo", "latency", latency=10)
    toxi.update_toxic("echo", "latency_downstream", latency=200)
    with connect(echo) as sock:
        assert roundtrip(sock) >= 0.2
