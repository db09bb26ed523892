"""VIDEO-SYSTEM 视频监控系统正常运行 — the registered cameras and NVRs answer on the LAN.

Why: seed 000 二(四)4② 网吧安全审计系统、视频系统是否正常运行, 调看网吧现场视频监控系统.
LEGAL.md names no provision specific to video surveillance; the general
security-technical-measure articles apply (条例 Art. 8, 24(五)).

How: every device of the camera survey (WS-Discovery, vendor discovery,
RTSP OPTIONS) and every host the service scan matched with role ``camera``
or ``nvr``, one per address. A host with an ``nvr`` match is an NVR (the
survey cannot tell them apart: NVRs answer the same discovery), every
other one a camera. Compared with the profile's ``servers.cameras`` and
``servers.nvrs``. More than registered is fine (the count is a minimum);
whether RTSP answered is in the evidence, not judged: a device that answers
discovery is on the LAN and running.

Fails when fewer cameras, or fewer NVRs, answer than registered. Not
applicable when the profile registers neither and none answers: there is
nothing to compare, and a pass would claim a video system nobody saw (the
officers look at it on site). Inconclusive when the survey did not run, and
when the service scan did not run: NVRs cannot then be told from cameras
(unless the cameras are short even counting every device: that fails).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from probe.checks.context import CheckContext, role_matches
from probe.findings import Status, Verdict

CHECK_ID = "VIDEO-SYSTEM"


def _devices(ctx: CheckContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cameras, NVRs), one row per address, in address order."""
    obs = ctx.observations
    swept = {h.address: h.mac for h in obs.arp.hosts}
    rows: dict[IPv4Address, dict[str, Any]] = {}
    for c in obs.cameras.cameras if obs.cameras else []:
        rows[c.address] = {"address": str(c.address), "mac": c.mac or swept.get(c.address), "how": list(c.how),
                           "rtsp_status": c.rtsp_status, "model": c.model, "signatures": []}
    matches = role_matches(ctx, ["camera", "nvr"])
    for m in matches:
        row = rows.setdefault(m.address, {"address": str(m.address), "mac": m.mac, "how": [], "rtsp_status": None,
                                          "model": None, "signatures": []})
        row["mac"] = row["mac"] or m.mac
        row["how"] = row["how"] + ["service-scan"] * ("service-scan" not in row["how"])
        row["signatures"] = sorted({*row["signatures"], m.signature})
    nvr = {m.address for m in matches if m.role == "nvr"}
    ordered = sorted(rows.items(), key=lambda item: int(item[0]))
    return [r for a, r in ordered if a not in nvr], [r for a, r in ordered if a in nvr]


def check(ctx: CheckContext) -> Verdict:
    """Compare the cameras and NVRs that answered with the registered numbers."""
    obs, servers = ctx.observations, ctx.profile.servers
    cameras, nvrs = _devices(ctx)
    evidence = {
        "cameras": cameras,
        "registered": servers.cameras,
        "nvrs": nvrs,
        "nvrs_registered": servers.nvrs,
        "services_scanned": obs.services is not None,
        "problems": [p.model_dump(mode="json") for p in obs.cameras.problems] if obs.cameras else [],
        "observations": ["cameras", "services.matches"],
    }
    values = {"cameras": len(cameras), "registered": servers.cameras, "nvrs": len(nvrs),
              "nvrs_registered": servers.nvrs}
    if obs.cameras is None:
        return Verdict(status=Status.INCONCLUSIVE, reason="not_run", evidence=evidence, values=values)
    if not (cameras or nvrs or servers.cameras or servers.nvrs):
        return Verdict(status=Status.NOT_APPLICABLE, reason="none_registered", evidence=evidence, values=values)
    short_cameras = len(cameras) < servers.cameras
    short_nvrs = obs.services is not None and len(nvrs) < servers.nvrs
    if short_cameras or short_nvrs:
        reason = "fewer_both" if short_cameras and short_nvrs else "fewer_cameras" if short_cameras else "fewer_nvrs"
        return Verdict(status=Status.FAIL, reason=reason, evidence=evidence, values=values)
    if obs.services is None:
        return Verdict(status=Status.INCONCLUSIVE, reason="nvrs_unknown", evidence=evidence, values=values)
    return Verdict(status=Status.PASS, reason="as_registered", evidence=evidence, values=values)
