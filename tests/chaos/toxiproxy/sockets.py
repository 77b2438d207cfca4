"""Blocking socket helpers for proxy tests."""

from __future__ import annotations

import socket


def connect(listen: str, timeout: float = 5.0) -> socket.socket:
    host, _, port = listen.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            break
        buf += part
    return buf


def recv_until_eof(sock: socket.socket) -> bytes:
    buf = b""
    while True:
        part = sock.recv(65536)
        if not part:
            return buf
        buf += part
