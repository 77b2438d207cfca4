"""Deep checks of signed PBFT messages and certificates, and the new-view O set.

A verdict is ``ok``, ``forged`` (a signature that does not verify, or a signer outside
the group) or ``invalid`` (well signed but impossible: wrong primary, short or
mismatched certificate). Nested messages are checked too, so certificates carried in
view changes, new views and catch-ups cannot smuggle in forgeries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from broker_agents.core.pbft.config import PbftConfig
from broker_agents.core.pbft.messages import (
    NULL_DIGEST,
    CatchUp,
    Commit,
    CommitCert,
    Fetch,
    NewView,
    PbftMessage,
    Prepare,
    PreparedCert,
    PrePrepare,
    Reply,
    Request,
    ViewChange,
    digest,
    signable,
    signer_of,
)
from broker_agents.core.pbft.signing import Verifier

Verdict = Literal["ok", "forged", "invalid"]


def _sig_ok(msg: PbftMessage, verifier: Verifier) -> bool:
    return bool(msg.signature) and verifier.verify(signer_of(msg), signable(msg), msg.signature)


def _worst(verdicts: Iterable[Verdict]) -> Verdict:
    out: Verdict = "ok"
    for v in verdicts:
        if v == "forged":
            return v
        if v == "invalid":
            out = v
    return out


def check_request(req: Request, verifier: Verifier) -> Verdict:
    return "ok" if _sig_ok(req, verifier) else "forged"


def _member_sig(msg: PbftMessage, cfg: PbftConfig, verifier: Verifier) -> Verdict:
    if signer_of(msg) not in cfg.replicas or not _sig_ok(msg, verifier):
        return "forged"
    return "ok"


def check_pre_prepare(pp: PrePrepare, cfg: PbftConfig, verifier: Verifier) -> Verdict:
    if _member_sig(pp, cfg, verifier) != "ok":
        return "forged"
    if pp.request is not None and check_request(pp.request, verifier) != "ok":
        return "forged"
    if pp.sender != cfg.primary(pp.view) or pp.digest != digest(pp.request):
        return "invalid"
    return "ok"


def _votes(
    pp: PrePrepare, votes: Sequence[Prepare] | Sequence[Commit], need: int,
    cfg: PbftConfig, verifier: Verifier, *, exclude_primary: bool,
) -> Verdict:
    senders = set()
    for v in votes:
        if _member_sig(v, cfg, verifier) != "ok":
            return "forged"
        if (v.view, v.seq, v.digest) != (pp.view, pp.seq, pp.digest) or v.sender in senders:
            return "invalid"
        if exclude_primary and v.sender == pp.sender:
            return "invalid"
        senders.add(v.sender)
    return "ok" if len(senders) >= need else "invalid"


def check_prepared_cert(cert: PreparedCert, cfg: PbftConfig, verifier: Verifier) -> Verdict:
    return _worst([
        check_pre_prepare(cert.pre_prepare, cfg, verifier),
        _votes(cert.pre_prepare, cert.prepares, 2 * cfg.faults, cfg, verifier,
               exclude_primary=True),
    ])


def check_commit_cert(cert: CommitCert, cfg: PbftConfig, verifier: Verifier) -> Verdict:
    return _worst([
        check_pre_prepare(cert.pre_prepare, cfg, verifier),
        _votes(cert.pre_prepare, cert.commits, cfg.quorum, cfg, verifier,
               exclude_primary=False),
    ])


def check_view_change(vc: ViewChange, cfg: PbftConfig, verifier: Verifier) -> Verdict:
    if _member_sig(vc, cfg, verifier) != "ok":
        return "forged"
    seqs = [c.pre_prepare.seq for c in vc.prepared]
    if len(set(seqs)) != len(seqs):
        return "invalid"
    if any(c.pre_prepare.view >= vc.new_view for c in vc.prepared):
        return "invalid"
    return _worst(check_prepared_cert(c, cfg, verifier) for c in vc.prepared)


def new_view_plan(view_changes: Iterable[ViewChange]) -> list[tuple[int, str, Request | None]]:
    """(seq, digest, request) the new primary must re-issue: for every sequence up to the
    highest prepared one, the request prepared in the highest view, else the null request.
    (No checkpoints: history starts at sequence 1; groups here decide few values.)"""
    best: dict[int, PrePrepare] = {}
    for vc in view_changes:
        for cert in vc.prepared:
            pp = cert.pre_prepare
            if pp.seq not in best or pp.view > best[pp.seq].view:
                best[pp.seq] = pp
    top = max(best, default=0)
    plan: list[tuple[int, str, Request | None]] = []
    for seq in range(1, top + 1):
        got = best.get(seq)
        plan.append((seq, got.digest, got.request) if got else (seq, NULL_DIGEST, None))
    return plan


def check_new_view(nv: NewView, cfg: PbftConfig, verifier: Verifier) -> Verdict:
    if _member_sig(nv, cfg, verifier) != "ok":
        return "forged"
    if nv.sender != cfg.primary(nv.view):
        return "invalid"
    senders = {vc.sender for vc in nv.view_changes}
    if len(senders) != len(nv.view_changes) or len(senders) < cfg.quorum:
        return "invalid"
    if any(vc.new_view != nv.view for vc in nv.view_changes):
        return "invalid"
    verdict = _worst(check_view_change(vc, cfg, verifier) for vc in nv.view_changes)
    verdict = _worst([verdict, *(check_pre_prepare(p, cfg, verifier) for p in nv.pre_prepares)])
    if verdict != "ok":
        return verdict
    expected = [(s, d) for s, d, _ in new_view_plan(nv.view_changes)]
    got = [(p.seq, p.digest) for p in nv.pre_prepares]
    if got != expected or any(p.view != nv.view for p in nv.pre_prepares):
        return "invalid"
    return "ok"


def check_message(msg: PbftMessage, cfg: PbftConfig, verifier: Verifier) -> Verdict:
    """Signature and structure of any message a replica may receive."""
    if isinstance(msg, Request):
        return check_request(msg, verifier)
    if isinstance(msg, PrePrepare):
        return check_pre_prepare(msg, cfg, verifier)
    if isinstance(msg, Prepare | Commit | Fetch | Reply):
        return _member_sig(msg, cfg, verifier)
    if isinstance(msg, ViewChange):
        return check_view_change(msg, cfg, verifier)
    if isinstance(msg, NewView):
        return check_new_view(msg, cfg, verifier)
    if isinstance(msg, CatchUp):
        if _member_sig(msg, cfg, verifier) != "ok":
            return "forged"
        return _worst(check_commit_cert(c, cfg, verifier) for c in msg.certs)
    return "invalid"
