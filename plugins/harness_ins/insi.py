"""The messages of the INSi teleservice (Assurance Maladie: the service "ServiceIdentiteCertifiee"
v1, operated by the GIE SESAM-Vitale): what a software sends to retrieve a patient's INS and what
it gets back, for the harness's INSi stand-in and the checks that judge what a software did
with the answer.

Two operations (their SOAP 1.2 actions): ``rechercherInsAvecTraitsIdentite`` (body
``RECSANSVITALE``: birth name, first names, sex, birth date, optionally the birth place's COG,
and an INS to verify: the WSDL has no other verification operation)
and ``rechercherInsAvecCarteVitale`` (body ``RECVITALE``: the beneficiary's matricule from the
card, birth name and date, rank of birth). One answer, ``RESULTAT``: a report ``CR`` (``00`` one
identity found, ``01`` none, ``02`` several) and, for ``00``, the individual: the active INS
(``INSACTIF``: matricule, key, OID), the INS it replaced (``INSHISTO``), and the identity traits
as the national reference holds them (``TIQ``).

Sources: the element names, namespaces, actions, report codes and labels are those of the WSDL
``DESIR_ICIR_EXP_1.5.0`` and its schemas (``INSi_RECSANS_INS.xsd``, ``INSi_RECVITALE_INS.xsd``,
``INSi_RESULTAT_INS.xsd``) and of the exchanges recorded against INSi's test environment, as the
public INSi client ``@padoa/tlsi-ins`` (MIT) ships them (``src/wsdl``, ``src/ins/fixtures``,
``src/ins/models/insi-fetch-ins.models.ts``); the three report codes and the conduct they call
for are also in the regional identity-vigilance guides (e-santé Bretagne, "Les retours possibles
du téléservice INSi"). The national service's matching tolerance is not public: the stand-in
matches traits exactly once normalised (upper case, no accents, single spaces), the first names
asked as the first ones held — said in its report, a setting nowhere silently guessed.

Everything here reads or writes elements the hardened parser built; sizes are bounded by the
caller (the services kit) and each trait by :data:`MAX_TRAIT`.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from lxml import etree

NS_RECSANS = "http://www.cnamts.fr/INSiRecSans"
NS_RECVIT = "http://www.cnamts.fr/INSiRecVit"
NS_RESULTAT = "http://www.cnamts.fr/INSiResultat"
SERVICE = "urn:ServiceIdentiteCertifiee:1.0.0"
SEARCH_TRAITS = f"{SERVICE}:rechercherInsAvecTraitsIdentite"
SEARCH_VITALE = f"{SERVICE}:rechercherInsAvecCarteVitale"
OPERATIONS = {SEARCH_TRAITS: "traits", SEARCH_VITALE: "vitale"}
BODIES = {f"{{{NS_RECSANS}}}RECSANSVITALE": "traits", f"{{{NS_RECVIT}}}RECVITALE": "vitale"}
FOUND, NONE_FOUND, SEVERAL = "00", "01", "02"
LABELS = {FOUND: "OK", NONE_FOUND: "Aucune identite trouvee", SEVERAL: "Plusieurs identites trouvees"}
OID_NIR, OID_NIA = "1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9"  # what INSi's test environment answers too
OID_TEST_NIR = "1.2.250.1.213.1.4.10"  # the INS guide's OID of test NIRs: the harness's own identities carry it
MAX_TRAIT = 200  # characters of one trait (the schemas bound none; a name is far shorter)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")  # the schemas' DateLunaire (a lunar date: 00 day or month allowed)
_SEX = re.compile(r"^[A-Z]$")  # CodSexe
_COG = re.compile(r"^[A-Za-z0-9]{5}$")
_NIR = re.compile(r"^\d{6}[A-Za-z0-9]\d{6}$")
_KEY = re.compile(r"^\d{2}$")


# The service's own fault codes for a malformed request are not public (a fault seen in its
# test environment: subcode ``siram_100``, detail ``desir_550``, for an unknown software
# number): the stand-in's codes are its own, prefixed ``harness_``, never passed off as INSi's.
MALFORMED = "harness_malformed"


class InsiError(ValueError):
    """A request the stand-in refuses: ``code`` its own (:data:`MALFORMED`), ``text`` for a person."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code, self.text = code, text


@dataclass(frozen=True)
class Ins:
    matricule: str  # 13 characters
    key: str  # 2 digits
    oid: str = OID_NIR
    type: str = "NIR"
    since: str = ""  # DateDeb, DateFin: when an INS it replaced was in force (YYYY-MM-DD), as INSi gives them
    until: str = ""


# Where INSi puts an INSHISTO's dates: its published schema after the OID ("schema"); 3 of the
# 12 answers recorded against INSi's test environment (@padoa/tlsi-ins fixtures) before the
# individual ("recorded"), which a client validating against the schema refuses. The stand-in
# answers either way ([services.insi] history_order): a software meets both.
HISTORY_ORDERS = ("schema", "recorded")


@dataclass(frozen=True)
class Identity:
    """A person as the national reference holds them (a test identity of the stand-in)."""

    active: Ins
    birth_name: str
    first_names: tuple[str, ...]  # every first name, in order
    sex: str
    birth_date: str  # YYYY-MM-DD
    birth_place: str  # the COG of the place of birth
    history: tuple[Ins, ...] = ()  # INS it replaced (a temporary NIA, a corrected NIR)
    source: str = "harness"  # "insi-test": an identity of INSi's own test environment


@dataclass
class Query:
    operation: str  # "traits" or "vitale"
    birth_name: str = ""
    first_names: list[str] = field(default_factory=list)
    sex: str = ""
    birth_date: str = ""
    birth_place: str = ""
    matricule: str = ""  # vitale: the beneficiary's (NumIdentifiant), traits: optional
    key: str = ""
    rank: str = ""

    def facts(self) -> dict:
        """What the request asked, as recorded (the traits as sent)."""
        return {k: v for k, v in self.__dict__.items() if v not in ("", [])}


def normalise(text: str) -> str:
    """A trait compared as the stand-in compares them: upper case, accents removed, spaces single."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).upper().split())


def _text(parent: etree._Element, ns: str, name: str, pattern: re.Pattern | None = None, what: str = "") -> str:
    found = parent.find(f"{{{ns}}}{name}")
    value = "".join(found.itertext()).strip() if found is not None else ""
    if len(value) > MAX_TRAIT:
        raise InsiError(MALFORMED, f"{name} : plus de {MAX_TRAIT} caractères")
    if value and pattern is not None and not pattern.match(value):
        raise InsiError(MALFORMED, f"{name} mal formé ({what}) : {value[:40]}")
    return value


def read_query(body: etree._Element) -> Query:
    """The search a request body asks for; :class:`InsiError` for one the schemas refuse."""
    operation = BODIES.get(body.tag)
    if operation is None:
        raise InsiError(MALFORMED, f"corps inattendu : {etree.QName(body).localname if isinstance(body.tag, str) else '-'}")
    if operation == "traits":
        ns = NS_RECSANS
        names = [n for n in ("".join(e.itertext()).strip() for e in body.findall(f"{{{ns}}}Prenom")) if n]
        if any(len(n) > MAX_TRAIT for n in names) or len(names) > 20:
            raise InsiError(MALFORMED, "Prenom : trop long ou trop nombreux")
        q = Query("traits", birth_name=_text(body, ns, "NomNaissance"), first_names=names,
                  sex=_text(body, ns, "Sexe", _SEX, "une lettre"), birth_date=_text(body, ns, "DateNaissance", _DATE, "AAAA-MM-JJ"),
                  birth_place=_text(body, ns, "LieuNaissance", _COG, "code COG"),
                  matricule=_text(body, ns, "NumIdentifiant", _NIR, "13 caractères"), key=_text(body, ns, "Cle", _KEY, "2 chiffres"))
        missing = [n for n, v in (("NomNaissance", q.birth_name), ("Prenom", q.first_names), ("Sexe", q.sex), ("DateNaissance", q.birth_date))
                   if not v]
        if missing:
            raise InsiError(MALFORMED, "traits obligatoires absents : " + ", ".join(missing))
        return q
    ns = NS_RECVIT
    holder = body.find(f"{{{ns}}}MatriculeIndividu")
    q = Query("vitale", birth_name=_text(body, ns, "NomNaissance"), birth_date=_text(body, ns, "DateNaissance", _DATE, "AAAA-MM-JJ"),
              rank=_text(body, ns, "RangNaissance"))
    if holder is not None:
        q.matricule = _text(holder, ns, "NumIdentifiant", _NIR, "13 caractères")
        q.key = _text(holder, ns, "Cle", _KEY, "2 chiffres")
    if not q.matricule or not q.birth_date:
        raise InsiError(MALFORMED, "carte Vitale : matricule de l'individu et date de naissance attendus")
    return q


def search(identities: list[Identity], q: Query) -> tuple[str, list[Identity]]:
    """(report code, the identities found): ``00`` exactly one, ``01`` none, ``02`` several."""
    if q.operation == "vitale":
        found = [i for i in identities if q.birth_date == i.birth_date
                 and q.matricule.upper() in {i.active.matricule.upper(), *(h.matricule.upper() for h in i.history)}]
    else:
        asked = [normalise(part) for name in q.first_names for part in name.split()]
        found = [i for i in identities
                 if normalise(q.birth_name) == normalise(i.birth_name) and q.sex == i.sex and q.birth_date == i.birth_date
                 and [normalise(n) for n in i.first_names][:len(asked)] == asked
                 and (not q.birth_place or q.birth_place.upper() == i.birth_place.upper())
                 and (not q.matricule or _holds(i, q.matricule, q.key))]
    return (FOUND if len(found) == 1 else NONE_FOUND if not found else SEVERAL), found


def _holds(identity: Identity, matricule: str, key: str) -> bool:
    """A verification (a search by traits carrying an INS: ``RECSANSVITALE`` has room for
    ``NumIdentifiant`` and ``Cle``) finds the person only if the INS is theirs, the active one
    or one it replaced (the answer then gives the active one: how the national service answers
    an INS it replaced is not public, the stand-in's choice)."""
    held = {(i.matricule.upper(), i.key) for i in (identity.active, *identity.history)}
    return (matricule.upper(), key) in held if key else matricule.upper() in {m for m, _ in held}


def _add(parent: etree._Element, name: str, text: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{NS_RESULTAT}}}{name}")
    el.text = text
    return el


def _ins(parent: etree._Element, name: str, ins: Ins, with_type: bool, order: str = "schema") -> None:
    el = etree.SubElement(parent, f"{{{NS_RESULTAT}}}{name}")

    def dates() -> None:
        for tag, value in (("DateDeb", ins.since), ("DateFin", ins.until)):
            if value:
                _add(el, tag, value)

    if order == "recorded":
        dates()
    who = etree.SubElement(el, f"{{{NS_RESULTAT}}}IdIndividu")
    _add(who, "NumIdentifiant", ins.matricule)
    _add(who, "Cle", ins.key)
    if with_type:
        _add(who, "TypeMatricule", ins.type)
    _add(el, "OID", ins.oid)
    if order != "recorded":
        dates()


def result(code: str, identity: Identity | None = None, *, history_order: str = "schema") -> etree._Element:
    """The ``RESULTAT`` of a search: its report, and for ``00`` the individual (the dates of the
    INS it replaced where ``history_order`` says: :data:`HISTORY_ORDERS`)."""
    root = etree.Element(f"{{{NS_RESULTAT}}}RESULTAT", nsmap={None: NS_RESULTAT})
    cr = etree.SubElement(root, f"{{{NS_RESULTAT}}}CR")
    _add(cr, "CodeCR", code)
    _add(cr, "LibelleCR", LABELS[code])
    if code == FOUND and identity is not None:
        person = etree.SubElement(root, f"{{{NS_RESULTAT}}}INDIVIDU")
        _ins(person, "INSACTIF", identity.active, with_type=False)  # as INSi's test environment answers: the type on history only
        for old in identity.history:
            _ins(person, "INSHISTO", old, with_type=True, order=history_order)
        tiq = etree.SubElement(person, f"{{{NS_RESULTAT}}}TIQ")
        _add(tiq, "NomNaissance", identity.birth_name)
        _add(tiq, "ListePrenom", " ".join(identity.first_names))
        _add(tiq, "Sexe", identity.sex)
        _add(tiq, "DateNaissance", identity.birth_date)
        _add(tiq, "LieuNaissance", identity.birth_place)
    return root


def read_result(root: etree._Element) -> dict:
    """What a ``RESULTAT`` says, as data: the report, the active INS (matricule with its key,
    OID), the INS it replaced, the traits — what the checks compare the software's emissions with."""
    def text(el: etree._Element | None, name: str) -> str:
        found = el.find(f"{{{NS_RESULTAT}}}{name}") if el is not None else None
        return "".join(found.itertext()).strip() if found is not None else ""

    cr = root.find(f"{{{NS_RESULTAT}}}CR")
    out: dict = {"code": text(cr, "CodeCR"), "label": text(cr, "LibelleCR")}
    person = root.find(f"{{{NS_RESULTAT}}}INDIVIDU")
    if person is None:
        return out

    def ins(el: etree._Element) -> dict:
        who = el.find(f"{{{NS_RESULTAT}}}IdIndividu")
        return {"ins": text(who, "NumIdentifiant") + text(who, "Cle"), "oid": text(el, "OID")}

    active = person.find(f"{{{NS_RESULTAT}}}INSACTIF")
    tiq = person.find(f"{{{NS_RESULTAT}}}TIQ")
    out.update({"active": ins(active) if active is not None else None,
                "history": [ins(h) for h in person.findall(f"{{{NS_RESULTAT}}}INSHISTO")],
                "traits": {k: text(tiq, name) for k, name in (("birth_name", "NomNaissance"), ("first_names", "ListePrenom"), ("sex", "Sexe"),
                                                               ("birth_date", "DateNaissance"), ("birth_place", "LieuNaissance"))}})
    return out


# The stand-in's identities. The first is one of INSi's own test environment (its answer as the
# public client @padoa/tlsi-ins recorded it: an active NIR and two INS it replaced, under the
# production OID as that environment answers); the others are the harness's, under the test OID,
# each making one answer happen: two people whose traits differ only by a later first name and
# the place of birth (02 until either is given), one born in Corsica, and the people of the
# lifecycle cases (:data:`LIFECYCLE_CASES`): one found, one to be qualified, one whose INS
# replaced an earlier one, one a card names, twins born the same day in the same place.
IDENTITIES: tuple[Identity, ...] = (
    Identity(Ins("1090763220834", "89"), "ECETINSI", ("PIERRE-ALAIN", "MURIEL", "FLORIANT"), "M", "2009-07-14", "63220",
             history=(Ins("2090763220834", "39", since="2019-03-01", until="2019-02-28"), Ins("2090663220123", "55")), source="insi-test"),
    Identity(Ins("2840175056123", "23", OID_TEST_NIR), "HARNESS-JUMEAU", ("CLAIRE", "ANNE"), "F", "1984-01-01", "75056"),
    Identity(Ins("2840169123456", "73", OID_TEST_NIR), "HARNESS-JUMEAU", ("CLAIRE", "MARIE"), "F", "1984-01-01", "69123"),
    Identity(Ins("156052A004567", "63", OID_TEST_NIR), "HARNESS-CORSE", ("ANTOINE",), "M", "1956-05-01", "2A004"),
    Identity(Ins("2900275056123", "36", OID_TEST_NIR), "HARNESS-TROUVEE", ("MARIE-CLAIRE", "ANNE"), "F", "1990-02-03", "75056"),
    Identity(Ins("1750469123045", "53", OID_TEST_NIR), "HARNESS-QUALIFIE", ("LOUIS", "PIERRE"), "M", "1975-04-05", "69123"),
    Identity(Ins("2621113055078", "03", OID_TEST_NIR), "HARNESS-REMPLACEE", ("JEANNE",), "F", "1962-11-20", "13055",
             history=(Ins("2621113055077", "04", OID_TEST_NIR, since="2018-01-01", until="2023-05-31"),)),
    Identity(Ins("1580933063011", "86", OID_TEST_NIR), "HARNESS-CARTE", ("MARC",), "M", "1958-09-10", "33063"),
    Identity(Ins("2950775056201", "84", OID_TEST_NIR), "HARNESS-JUMELLE", ("LEA", "ROSE"), "F", "1995-07-08", "75056"),
    Identity(Ins("2950775056202", "83", OID_TEST_NIR), "HARNESS-JUMELLE", ("LEA", "JADE"), "F", "1995-07-08", "75056"),
)


@dataclass(frozen=True)
class Case:
    """A person the harness asks the software to register, and what INSi will answer for them:
    the traits as the person's document gives them (typed by the software's user, as written
    there: accents and case included), the INS the person brings (a card, a letter: the software
    may not take it on trust), whether a high-trust document was checked (the identity may then
    be qualified), and INSi's report for these traits (``unavailable``: the service is down)."""

    ref: str
    traits: dict
    expected: str
    document: bool = False
    claimed_ins: str = ""
    claimed_from: str = ""  # where the INS the person brings is written: "carte Vitale", "courrier"

    def asked(self) -> dict:
        return {"ref": self.ref, **self.traits, **({"ins": self.claimed_ins, "ins_from": self.claimed_from} if self.claimed_ins else {}),
                "document": "CNI" if self.document else ""}


# The lifecycle cases (one per INSi answer the software must handle, plus the service down);
# their birth dates differ from each other, so what the software emits is told apart by them.
LIFECYCLE_CASES: tuple[Case, ...] = (
    Case("found", {"birth_name": "Harness-Trouvée", "first_names": ["Marie-Claire"], "sex": "F", "birth_date": "1990-02-03"}, FOUND),
    Case("found-validated", {"birth_name": "HARNESS-QUALIFIE", "first_names": ["Louis"], "sex": "M", "birth_date": "1975-04-05",
                             "birth_place": "69123"}, FOUND, document=True),
    Case("replaced", {"birth_name": "HARNESS-REMPLACEE", "first_names": ["Jeanne"], "sex": "F", "birth_date": "1962-11-20"}, FOUND,
         document=True),
    Case("card", {"birth_name": "HARNESS-CARTE", "first_names": ["Marc"], "sex": "M", "birth_date": "1958-09-10"}, FOUND, document=True,
         claimed_ins="158093306301186", claimed_from="carte Vitale"),
    Case("none", {"birth_name": "HARNESS-INCONNU", "first_names": ["Paul"], "sex": "M", "birth_date": "1970-01-01", "birth_place": "75056"},
         NONE_FOUND, document=True, claimed_ins="170017505600997", claimed_from="courrier"),
    Case("several", {"birth_name": "HARNESS-JUMELLE", "first_names": ["Léa"], "sex": "F", "birth_date": "1995-07-08", "birth_place": "75056"},
         SEVERAL, document=True, claimed_ins="295077505620184", claimed_from="courrier"),
    Case("unavailable", {"birth_name": "HARNESS-PANNE", "first_names": ["Lise"], "sex": "F", "birth_date": "2001-06-15", "birth_place": "69123"},
         "unavailable"),
)
