"""The demo's INSi client (zeep, from the INS plugin's WSDL) against the INSi stand-in: each
answer turned into the identity the identity-vigilance rules call for, INSi's traits kept,
an unavailable service tried a bounded number of times and the user told."""
import pytest

from harness_demo.insi_client import TRIES, register
from harness_ins.insi_service import InsiStandIn

TYPED = {"birth_name": "Écetinsi", "first_names": ["Pierre-Alain"], "sex": "M", "birth_date": "2009-07-14"}


@pytest.fixture(scope="module")
def stand_in():
    with InsiStandIn() as s:
        yield s


def test_one_identity_found_is_recovered_with_insis_traits_and_ins(stand_in):
    held = register(TYPED, stand_in.base_url, stand_in.credentials)
    assert (held.status, held.report, held.ins, held.oid, held.calls) == ("RECUP", "00", "109076322083489", "1.2.250.1.213.1.4.8", 1)
    assert held.traits == {"birth_name": "ECETINSI", "first_names": ["PIERRE-ALAIN", "MURIEL", "FLORIANT"], "sex": "M",
                           "birth_date": "2009-07-14", "birth_place": "63220"}  # INSi's, not the ones typed
    ex = stand_in.journal.exchanges[-1]
    assert ex.facts["software"]["IDAM"] == "HARNESS-DEMO" and ex.facts["asked"]["birth_name"] == "Écetinsi"


def test_none_or_several_found_leave_a_provisional_identity_without_ins_and_say_why(stand_in):
    none = register({**TYPED, "birth_date": "2009-07-15"}, stand_in.base_url, stand_in.credentials)
    several = register({"birth_name": "HARNESS-JUMEAU", "first_names": ["CLAIRE"], "sex": "F", "birth_date": "1984-01-01"},
                       stand_in.base_url, stand_in.credentials)
    assert (none.status, none.report, none.ins) == ("PROV", "01", "") and "Aucune identité" in none.told_user
    assert (several.status, several.report, several.ins) == ("PROV", "02", "") and "Plusieurs identités" in several.told_user


def test_the_fault_that_keeps_the_typed_traits_keeps_them():
    with InsiStandIn() as s:
        held = register(TYPED, s.base_url, s.credentials, defects={"insi-own-traits"})
    assert held.status == "RECUP" and held.traits == TYPED


@pytest.mark.parametrize("fail_first, defects, calls, status", [
    (1, set(), 2, "RECUP"),  # a second try reaches it
    (50, set(), TRIES, "PROV"),  # bounded, then the user is told
    (50, {"insi-retry-forever"}, TRIES * 3, "PROV"),  # the fault: far more calls to a service that is down
])
def test_an_unavailable_insi_is_tried_a_bounded_number_of_times_then_the_user_is_told(fail_first, defects, calls, status):
    with InsiStandIn(fail_first=fail_first) as s:
        held = register(TYPED, s.base_url, s.credentials, defects=defects)
        assert (held.calls, held.status) == (calls, status) and len(s.journal.exchanges) == calls
    if status == "PROV":
        assert held.report == "unavailable" and "ne répond pas" in held.told_user and held.ins == ""


def test_a_request_insi_refuses_is_not_tried_again(stand_in):
    before = len(stand_in.journal.exchanges)
    held = register({**TYPED, "birth_date": "14/07/2009"}, stand_in.base_url, stand_in.credentials)
    assert (held.report, held.status, held.calls) == ("fault", "PROV", 1) and len(stand_in.journal.exchanges) == before + 1
    assert "refusé" in held.told_user and stand_in.journal.exchanges[-1].facts["fault"] == "harness_malformed"


def test_the_demo_reads_insis_answers_whichever_place_insi_gives_a_replaced_ins_its_dates():
    """INSi's test environment was recorded putting an INSHISTO's dates before the individual (3 of
    12 answers), where its published schema puts them after: a client that reads answers against
    the schema refuses those (zeep, strict: shown here), one that reads them loosely loses the
    INS they date; the demo reads them with the INS plugin's reader, alike in both orders."""
    from zeep.exceptions import XMLParseError

    from harness_demo.insi_client import _context, _service

    traits = {"birth_name": "HARNESS-REMPLACEE", "first_names": ["Jeanne"], "sex": "F", "birth_date": "1962-11-20"}
    held = {}
    for order in ("schema", "recorded"):
        with InsiStandIn(history_order=order) as s:
            held[order] = [register(traits, s.base_url, s.credentials, document="CNI", defects=d) for d in (set(), {"insi-replaced-ins"})]
            if order == "recorded":
                _, strict = _service(s.base_url, s.credentials)
                with pytest.raises(XMLParseError, match="DateDeb"):
                    strict.rechercherInsAvecTraitsIdentite(NomNaissance="HARNESS-REMPLACEE", Prenom=["Jeanne"], Sexe="F", DateNaissance="1962-11-20",
                                                           _soapheaders=[_context("3.2.1")])
    for order, (right, wrong) in held.items():
        assert (right.status, right.ins, wrong.ins) == ("QUAL", "262111305507803", "262111305507704"), order
    assert held["schema"][0].traits == held["recorded"][0].traits
