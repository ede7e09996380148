"""The test professionals the Pro Santé Connect stand-in lets one log in as, and what PSC says
of each (its userinfo).

Shape of the userinfo: PSC's, as the ANS's own code reads it and its test fixture shows it
(github.com/prosanteconnect/generate-VIHF: ``model/prosanteconnect/UserInfos.java``,
``Practice.java``, and the userinfo of ``VihfBuilderTest.java``; PSC's userinfo page,
industriels.esante.gouv.fr/produits-et-services/pro-sante-connect/userinfo). The national
identifier is the identifier's type followed by the identifier: ``8`` + RPPS (11 digits),
``0`` + ADELI (9 digits), the form ``SubjectNameID`` and ``preferred_username`` carry.

The first professional is the one of that official fixture (test identity ``899700366240``,
a general practitioner). The others are the harness's, built on the same shape, with test
identifiers (``8997...``, ``0997...``): none is a real person. Their codes (profession
``10`` médecin, ``21`` pharmacien, ``60`` infirmier; savoir-faire ``SM26``; sector
``SA07``) are those of the nomenclatures the fixture uses (NOS: TRE_G15 profession, TRE_R38
savoir-faire, TRE_R02 secteur d'activité).

Cards: PSC accepts e-CPS and CPS (and the means its referential adds, such as a FIDO key);
it does not accept a CPE or CPA card (staff and authorised-staff cards: the ENS committee of
November 2025) — a holder of one is refused at the login page, as PSC refuses them.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

MEANS = ("e-CPS", "CPS", "FIDO")  # means of identification PSC accepts
REFUSED_CARDS = ("CPE", "CPA")  # cards PSC does not accept
SECTOR_SYSTEM = "1.2.250.1.71.4.2.4"  # TRE_R02-SecteurActivite, as in the fixture's Secteur_Activite
ROLE_SYSTEM = "1.2.250.1.213.1.1.5.5"  # the fixture's SubjectRole code system
PSI_LOCALE = "1.2.250.1.213.1.3.1.1"  # the fixture's PSI_Locale
PALIER = "APPPRIP3^1.2.250.1.213.1.5.1.1.1"  # the fixture's Palier_Authentification (e-CPS); see Professional.palier


@dataclass(frozen=True)
class Practice:
    """One ``exercice`` of ``SubjectRefPro`` (a profession, with its situations)."""

    profession: str  # codeProfession (TRE_G15)
    category: str = "C"  # codeCategorieProfessionnelle (C: civil)
    civility: str = "DR"  # codeCiviliteDexercice
    expertise_type: str = ""  # codeTypeSavoirFaire (S: spécialité ordinale)
    expertise: str = ""  # codeSavoirFaire (TRE_R38)
    sector: str = "SA07"  # codeSecteurDactivite of its activity (SA07: cabinet individuel)
    mode: str = "L"  # codeModeExercice (L: libéral, S: salarié)
    organization: str = ""  # raisonSocialeSite
    organization_id: str = ""  # identifiantTechniqueDeLaStructure


@dataclass(frozen=True)
class Professional:
    key: str  # how the login page and a target name them
    national_id: str  # SubjectNameID: 8 + RPPS, or 0 + ADELI
    family_name: str
    given_name: str
    practices: tuple[Practice, ...]
    civility: str = "M"
    card: str = "CPS"  # the card the person holds (CPS, CPE, CPA)
    means: tuple[str, ...] = MEANS  # the means this person may log in with
    source: str = "harness"  # "official": the ANS's own test fixture
    sub_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def origin(self) -> str:
        return {"8": "RPPS", "0": "ADELI"}.get(self.national_id[:1], "")

    @property
    def sub(self) -> str:
        # the fixture's form: f:<uuid>:<national identifier>
        return f"f:{self.sub_uuid}:{self.national_id}"

    @property
    def accepted(self) -> bool:
        return self.card not in REFUSED_CARDS

    def display(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def userinfo(self) -> dict[str, Any]:
        """What PSC's userinfo says of this professional (the fixture's fields)."""
        first = self.practices[0]
        return {
            "Secteur_Activite": f"{first.sector}^{SECTOR_SYSTEM}",
            "sub": self.sub,
            "email_verified": False,
            "SubjectOrganization": first.organization,
            "Mode_Acces_Raison": "",
            "preferred_username": self.national_id,
            "given_name": self.given_name,
            "Acces_Regulation_Medicale": "FAUX",
            "UITVersion": "1.0",
            "Palier_Authentification": PALIER,
            "SubjectRefPro": {"codeCivilite": self.civility, "exercices": [_practice(p, self) for p in self.practices]},
            "SubjectOrganizationID": first.organization_id,
            "SubjectRole": [f"{p.profession}^{ROLE_SYSTEM}" for p in self.practices],
            "PSI_Locale": PSI_LOCALE,
            "otherIds": [{"identifiant": self.national_id, "origine": self.origin, "qualite": 1}],
            "SubjectNameID": self.national_id,
            "family_name": self.family_name,
        }


def _practice(p: Practice, who: Professional) -> dict:
    return {"codeProfession": p.profession, "codeCategorieProfessionnelle": p.category, "codeCiviliteDexercice": p.civility,
            "nomDexercice": who.family_name, "prenomDexercice": who.given_name, "codeTypeSavoirFaire": p.expertise_type,
            "codeSavoirFaire": p.expertise,
            "activities": [{"codeModeExercice": p.mode, "codeSecteurDactivite": p.sector, "raisonSocialeSite": p.organization,
                            "identifiantTechniqueDeLaStructure": p.organization_id}]}


BUILTIN = (
    # the ANS's fixture (generate-VIHF, VihfBuilderTest): KIT DOC0036624, médecin généraliste
    Professional("kit-doc0036624", "899700366240", "DOC0036624", "KIT",
                 (Practice("10", expertise_type="S", expertise="SM26", organization="CABINET M DOC0036624", organization_id="R95141"),),
                 source="official"),
    Professional("pharmacien", "899700412345", "PHARMA0041234", "ALICE",
                 (Practice("21", civility="M", sector="SA33", organization="PHARMACIE DEMO", organization_id="R95200"),), civility="MME"),
    Professional("infirmier-adeli", "0997001234", "INFI0001234", "BRUNO",
                 (Practice("60", civility="M", organization="CABINET INFIRMIER DEMO", organization_id="R95300"),)),
    Professional("secretaire-cpe", "3997001234567", "SECRE0001234", "CLAIRE",
                 (Practice("", category="", civility="", sector="SA07", mode="S", organization="CABINET M DOC0036624",
                           organization_id="R95141"),), civility="MME", card="CPE", means=("CPS",)),
)
