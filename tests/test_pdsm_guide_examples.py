"""The PDSm guide's own examples (ansforge/IG-fhir-partage-de-documents-de-sante, FHIR
Shorthand under input/fsh/Examples), read by tests/fsh.py: each example the guide declares
conformant to a profile the stand-in applies is valid FHIR R4 and breaks none of the rules
the stand-in takes from that profile; the guide's example response has the shape of the
stand-in's; and the examples assembled into one ITI-65 bundle are refused for what they
really say (a hash and a size that are not the Binary's, a Patient without identifier).

The guide's source is read from ``HARNESS_PDSM_IG`` (a checkout, or a bare git directory);
the test is skipped with that reason when it is absent (no machine here reaches GitHub)."""
import json
import os
import subprocess
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from harness_xds import mhd
from tests import fsh

EXAMPLES = "input/fsh/Examples"


def _examples() -> str | None:
    source = os.environ.get("HARNESS_PDSM_IG")
    if not source:
        return None
    folder = Path(source)
    if (folder / EXAMPLES).is_dir():
        return "\n".join(p.read_text(encoding="utf-8") for p in sorted((folder / EXAMPLES).glob("*.fsh")))
    names = subprocess.run(["git", "--git-dir", str(folder), "ls-tree", "--name-only", "HEAD", f"{EXAMPLES}/"], capture_output=True, text=True, check=True)
    return "\n".join(subprocess.run(["git", "--git-dir", str(folder), "show", f"HEAD:{n}"], capture_output=True, text=True, check=True).stdout
                     for n in sorted(names.stdout.split()))


@pytest.fixture(scope="module")
def guide():
    text = _examples()
    if text is None:
        pytest.skip("the PDSm guide's source is absent: set HARNESS_PDSM_IG to a checkout of ansforge/IG-fhir-partage-de-documents-de-sante")
    instances, aliases = fsh.parse(text)
    return lambda name: fsh.resource(name, instances, aliases)


def valid(resource: dict) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_the_guides_document_reference_is_valid_and_breaks_no_rule_of_its_profile(guide):
    dr = guide("exemple-pdsm-documentreference")
    valid(dr)
    assert mhd.document_reference_problems(dr) == []


def test_the_guides_submission_set_is_valid_and_breaks_no_rule_of_its_profile(guide):
    lst = guide("ExampleSubmissionSet")
    valid(lst)
    assert mhd.submission_set_problems(lst) == []


def test_the_guides_response_has_the_shape_of_the_stand_ins(guide):
    response = guide("transaction-response-bundle")
    valid(response)
    assert response["type"] == "transaction-response"
    assert [e["response"]["location"].split("/")[0] for e in response["entry"]] == ["List", "DocumentReference", "Binary"]
    assert all(e["response"]["status"].startswith("201") for e in response["entry"])


def test_the_guides_examples_as_one_publication_are_refused_for_what_they_say(guide):
    from harness_pdsm.standin import PdsmStandIn
    import requests

    entries = []
    for name in ("ExampleSubmissionSet", "exemple-pdsm-documentreference", "6789", "fr-patient-123", "org-example"):
        r = guide(name)
        entries.append({"fullUrl": f"http://exemple.com/fhir/{r['resourceType']}/{r['id']}", "resource": r,
                        "request": {"method": "POST", "url": r["resourceType"]}})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    valid(bundle)
    provided = mhd.read_provide(bundle)
    said = {(p.rule, p.location) for p in provided.problems}
    # the example's hash is SHA-1 of nothing and its size 345678; the Binary holds "Hello World"
    assert said == {("MHD-65-06", "Bundle.entry[1].resource.content[0].attachment.hash"),
                    ("MHD-65-06", "Bundle.entry[1].resource.content[0].attachment.size")}, said
    mapped = mhd.to_xds(provided)
    assert {p.rule for p in mapped.problems if p.severity.fails} == {"MHD-MAP-02"}  # the example Patient has no identifier (no INS)
    standin = PdsmStandIn().start()
    try:
        session = requests.Session()
        session.trust_env = False
        session.verify = str(standin.credentials / "ca.pem")
        res = session.post(standin.base_url, data=json.dumps(bundle), headers={"Content-Type": "application/fhir+json"}, timeout=20)
        assert res.status_code == 422 and all("MHD-65-06" in i["diagnostics"] for i in res.json()["issue"])
    finally:
        standin.stop()
