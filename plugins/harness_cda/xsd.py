"""XSD validation of CDA documents against the kit's CDA_extended.xsd (lxml)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lxml import etree

from harness import HarnessError, catalogue

M = catalogue(__name__)


class XsdError(HarnessError):
    pass


@lru_cache(maxsize=4)
def load_schema(xsd: Path) -> etree.XMLSchema:
    # The kit's own schema files are read from disk with includes; no network.
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    try:
        return etree.XMLSchema(etree.parse(str(xsd), parser))
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise XsdError(M("xsd.unusable", xsd=str(xsd), error=str(exc))) from None


def validate(schema: etree.XMLSchema, element: etree._Element) -> list[dict]:
    """Errors as {line, message}, line numbers from the original file."""
    schema.validate(element)
    return [{"line": e.line, "column": e.column, "message": e.message} for e in schema.error_log]
