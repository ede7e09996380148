"""Coded values of what the software published through PDSm, for the terminology scenarios
(``harness_coded_values``): the metadata of each ITI-65 bundle, read through MHD's mapping
(:mod:`harness_xds.mhd`), each value bound to the value set its XDS attribute requires
(:data:`harness_xds.terminology.BINDINGS`) and located by its FHIR path. The documents it
carries are recorded apart (``pdsm-doc``): the CDA extractor reads them."""
from __future__ import annotations

from harness import CheckContext, UnsafeInput
from harness.terminology import CodedValue


def coded_values(ctx: CheckContext, name: str) -> list[CodedValue] | None:
    if not name.startswith("pdsm-request/"):
        return None
    from harness_xds import mhd
    from harness_xds.terminology import submission_values

    from .standin import read_bundle

    try:
        bundle = read_bundle(ctx.read(name), ctx.artefact(name).media_type)
    except UnsafeInput:
        return None  # unreadable: the publication check says so
    except Exception:  # noqa: BLE001 (XML that fhir.resources cannot read as a Bundle)
        return None
    provided = mhd.read_provide(bundle)
    if not provided.documents:
        return None  # not a publication
    return submission_values(mhd.to_xds(provided).submission, name)
