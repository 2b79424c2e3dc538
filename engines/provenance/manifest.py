"""C2PA manifests (c2pa-python): offline MP4s say they are AI-generated, signed; verify reads them.

The manifest holds one `c2pa.created` action whose digital source type is the
IPTC term for trained algorithmic media, facecast as the claim generator, and
an `org.facecast.provenance` assertion naming the invisible mark the frames
carry, so the file's two kinds of provenance point at each other. Signing is
local: no timestamp authority and no network (a manifest without a trusted
timestamp is valid while its certificate is).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .credentials import DEV_ORGANIZATION, SigningCredentials

__all__ = [
    "DIGITAL_SOURCE_TYPE",
    "ManifestReport",
    "describe",
    "manifest_definition",
    "read_manifest",
    "sign_mp4",
]

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PROVENANCE_LABEL = "org.facecast.provenance"
_UNTRUSTED = "signingCredential.untrusted"


def _version() -> str:
    try:
        return importlib.metadata.version("facecast")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def manifest_definition(title: str, mark_id: str | None, visible_label: bool) -> dict[str, Any]:
    """The manifest of one rendered file; `mark_id` is the frames' mark, None when off."""
    agent = {"name": "facecast", "version": _version()}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "format": "video/mp4",
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": DIGITAL_SOURCE_TYPE,
                            "softwareAgent": agent,
                            "description": "talking portrait generated from a still image "
                            "and speech",
                        }
                    ]
                },
            },
            {
                "label": PROVENANCE_LABEL,
                "data": {"watermark": mark_id, "visible_label": visible_label},
            },
        ],
    }


def sign_mp4(
    source: Path, dest: Path, credentials: SigningCredentials, definition: dict[str, Any]
) -> None:
    """Write `source` with the signed manifest embedded to `dest` (a different path)."""
    import c2pa

    info = c2pa.C2paSignerInfo(
        credentials.alg.encode(), credentials.chain_pem, credentials.key_pem, None
    )
    with (
        c2pa.Signer.from_info(info) as signer,
        c2pa.Builder(definition) as builder,
        open(source, "rb") as src,
        open(dest, "w+b") as dst,
    ):
        builder.sign(signer, "video/mp4", src, dst)


@dataclass(frozen=True)
class ManifestReport:
    """What the C2PA reader found. validation_state is c2pa's: "Trusted" (signer on a
    configured trust list), "Valid" (signature and content hashes check, signer not on
    a trust list), "Invalid"; failures are its failed validation codes."""

    present: bool
    validation_state: str | None = None
    failures: tuple[str, ...] = ()
    claim_generator: str | None = None
    ai_generated: bool = False  # an action declares trained algorithmic media
    actions: tuple[str, ...] = ()
    signer: str | None = None
    issuer: str | None = None
    development_certificate: bool = False
    watermark: str | None = None  # the mark the manifest says the frames carry
    error: str | None = None  # the reader could not read what is there

    @property
    def valid(self) -> bool:
        return self.validation_state in ("Valid", "Trusted")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["failures"], values["actions"] = list(self.failures), list(self.actions)
        values["valid"] = self.valid
        return values


def read_manifest(stream: BinaryIO, mime_type: str) -> ManifestReport:
    """The manifest embedded in a seekable file of `mime_type`, read with c2pa's Reader."""
    import c2pa

    try:
        stream.seek(0)
        reader = c2pa.Reader.try_create(mime_type, stream)
    except c2pa.C2paError as exc:
        return ManifestReport(present=False, error=str(exc)[:300])
    if reader is None:
        return ManifestReport(present=False)
    with reader:
        state = reader.get_validation_state()
        results = reader.get_validation_results() or {}
        manifest = reader.get_active_manifest() or {}
    return _report(manifest, state, results)


def _report(manifest: dict[str, Any], state: str | None, results: dict[str, Any]) -> ManifestReport:
    active = results.get("activeManifest", {})
    failures = tuple(str(item.get("code")) for item in active.get("failure", []))
    actions, ai, watermark = [], False, None
    for assertion in manifest.get("assertions", []):
        data = assertion.get("data", {})
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in data.get("actions", []):
                actions.append(str(action.get("action")))
                ai = ai or action.get("digitalSourceType") == DIGITAL_SOURCE_TYPE
        elif assertion.get("label") == PROVENANCE_LABEL and isinstance(data, dict):
            watermark = data.get("watermark")
    generators = manifest.get("claim_generator_info") or [{}]
    generator = " ".join(str(generators[0].get(k, "")) for k in ("name", "version")).strip()
    signature = manifest.get("signature_info", {})
    return ManifestReport(
        present=True,
        validation_state=state,
        failures=failures,
        claim_generator=generator or manifest.get("claim_generator"),
        ai_generated=ai,
        actions=tuple(actions),
        signer=signature.get("common_name"),
        issuer=signature.get("issuer"),
        development_certificate=signature.get("issuer") == DEV_ORGANIZATION,
        watermark=watermark if isinstance(watermark, str) else None,
    )


def describe(report: ManifestReport) -> str:
    """One line for people."""
    if not report.present:
        return "no C2PA manifest" + (f" ({report.error})" if report.error else "")
    parts = [f"C2PA manifest {report.validation_state}"]
    if report.valid:
        parts[0] += " (signature and content hashes check)"
    failures = [code for code in report.failures if code != _UNTRUSTED]
    if _UNTRUSTED in report.failures:
        parts.append("its signer is on no trust list this reader knows")
    if failures:
        parts.append(f"failed checks: {', '.join(failures)}")
    if report.ai_generated:
        parts.append("declares trained algorithmic media (AI-generated)")
    parts.append(f"claim generator {report.claim_generator}")
    parts.append(f"signed by {report.signer!r} of {report.issuer!r}")
    if report.development_certificate:
        parts.append("a facecast development certificate, not proof of origin")
    return "; ".join(parts)
