"""Raft leadership observations from what members expose: /metrics and their JSON logs.

Two sources feed ``check_one_leader_per_term``. Metrics samples (``ba_raft_term`` and
``ba_raft_is_leader`` per group/member, read together from one exposition, so they are
a consistent pair) see leaders that last long enough to be sampled; ``raft.elected`` log
lines see every leader, including one that lost its term within milliseconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

_SAMPLE = re.compile(
    r'^(ba_raft_term|ba_raft_is_leader)\{([^}]*)\}\s+([-+0-9.eE]+|NaN)\s*$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_raft_metrics(text: str, group: str) -> dict[str, tuple[int, str]]:
    """member -> (term, "leader" | "follower") for ``group`` in one Prometheus exposition.

    A member with a term but no is_leader sample counts as a follower.
    """
    terms: dict[str, int] = {}
    leading: dict[str, bool] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m is None:
            continue
        labels = dict(_LABEL.findall(m.group(2)))
        if labels.get("group") != group or "member" not in labels:
            continue
        value = float(m.group(3))
        if m.group(1) == "ba_raft_term":
            terms[labels["member"]] = int(value)
        else:
            leading[labels["member"]] = value >= 1.0
    return {member: (term, "leader" if leading.get(member) else "follower")
            for member, term in terms.items()}


def elections_from_log(lines: Iterable[str], group: str) -> list[tuple[str, int]]:
    """(member, term) of every ``raft.elected`` JSON log line of ``group``.

    Lines that are not JSON objects (tracebacks, console output) are skipped.
    """
    out: list[tuple[str, int]] = []
    for line in lines:
        if "raft.elected" not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or rec.get("event") != "raft.elected":
            continue
        if rec.get("group") != group or "member" not in rec or "term" not in rec:
            continue
        out.append((str(rec["member"]), int(rec["term"])))
    return out
