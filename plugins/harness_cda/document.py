"""Reading a CDA document as the kit expects it, including "auto-présentable" files."""
from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from harness import UnsafeInput, catalogue, parse_xml

M = catalogue(__name__)

HL7 = "urn:hl7-org:v3"
CDA_ROOT = f"{{{HL7}}}ClinicalDocument"


@dataclass
class CdaDocument:
    tree: etree._ElementTree
    root: etree._Element  # the ClinicalDocument element
    embedded: bool  # found inside another root (an xsl:stylesheet "auto-présentable" file)

    def text(self) -> str:
        """The ClinicalDocument alone, serialised, for engines that take text."""
        return etree.tostring(self.root, encoding="unicode")

    def template_ids(self) -> list[str]:
        return [t.get("root", "") for t in self.root.findall(f"{{{HL7}}}templateId")]

    def code(self) -> tuple[str | None, str | None]:
        code = self.root.find(f"{{{HL7}}}code")
        return (code.get("code"), code.get("codeSystem")) if code is not None else (None, None)


class NotCda(UnsafeInput):
    pass


def read_cda(data: bytes, source: str) -> CdaDocument:
    tree = parse_xml(data, source=source)
    root = tree.getroot()
    if root.tag == CDA_ROOT:
        return CdaDocument(tree, root, False)
    found = next(root.iter(CDA_ROOT), None)
    if found is None:
        raise NotCda("not-cda", M("doc.not_cda", source=source))
    return CdaDocument(tree, found, True)
