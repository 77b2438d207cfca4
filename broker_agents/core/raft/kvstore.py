"""The built-in replicated key-value state machine, with compare-and-set.

Commands (plain dicts, so `nats req` with JSON works):

    {"op": "put", "key": k, "value": v}                  -> {"ok": true, "version": n}
    {"op": "delete", "key": k}                           -> {"ok": existed, "version": n}
    {"op": "cas", "key": k, "value": v,
     "expected": old | null, ("version": n)}             -> {"ok": bool, "version", "value"}
    {"op": "get", "key": k}  (apply or query)            -> {"value": v | null, "version": n}
    {"op": "keys"}           (query)                     -> {"keys": [...]}

``version`` is the store-wide revision at which the key was last written (0 = absent), as
in etcd. ``cas`` succeeds when the current value equals ``expected`` (``null`` meaning the
key is absent) and, if ``version`` is given, the key's version equals it too.
"""

from __future__ import annotations

from typing import Any

import msgpack


class KVStateMachine:
    __slots__ = ("data", "revision")

    def __init__(self) -> None:
        self.data: dict[str, tuple[Any, int]] = {}
        self.revision = 0

    @staticmethod
    def _key(command: Any) -> str:
        if not isinstance(command, dict):
            raise ValueError("command must be an object")
        key = command.get("key")
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string")
        return key

    def apply(self, command: Any) -> Any:
        op = command.get("op") if isinstance(command, dict) else None
        if op in ("get", "keys"):
            return self.query(command)
        key = self._key(command)
        if op == "put":
            return self._write(key, command.get("value"))
        if op == "delete":
            existed = self.data.pop(key, None) is not None
            if existed:
                self.revision += 1
            return {"ok": existed, "version": self.revision}
        if op == "cas":
            value, version = self.data.get(key, (None, 0))
            ok = value == command.get("expected")
            if "version" in command and command["version"] is not None:
                ok = ok and version == command["version"]
            if not ok:
                return {"ok": False, "version": version, "value": value}
            return self._write(key, command.get("value"))
        raise ValueError(f"unknown op {op!r}")

    def _write(self, key: str, value: Any) -> dict[str, Any]:
        if value is None:
            raise ValueError("value must not be null (use delete)")
        self.revision += 1
        self.data[key] = (value, self.revision)
        return {"ok": True, "version": self.revision, "value": value}

    def query(self, query: Any) -> Any:
        op = query.get("op", "get") if isinstance(query, dict) else None
        if op == "keys":
            return {"keys": sorted(self.data)}
        if op != "get":
            raise ValueError(f"unknown query {op!r}")
        value, version = self.data.get(self._key(query), (None, 0))
        return {"value": value, "version": version}

    def get(self, key: str) -> Any:
        return self.data.get(key, (None, 0))[0]

    def snapshot(self) -> bytes:
        rows = [[k, v, ver] for k, (v, ver) in sorted(self.data.items())]
        packed: bytes = msgpack.packb({"rev": self.revision, "rows": rows}, use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
        self.revision = int(obj["rev"])
        self.data = {str(k): (v, int(ver)) for k, v, ver in obj["rows"]}
