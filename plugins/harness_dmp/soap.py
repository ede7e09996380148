"""SOAP 1.2 with MTOM/XOP, as IHE XDS.b transactions carry it.

Reading a request: the MIME package (``multipart/related``) is parsed by the standard
library's ``email`` parser, which keeps binary parts byte for byte; the root part (the
``start`` parameter, else the first) is the SOAP envelope, parsed by the harness's hardened
XML parser; ``xop:Include`` elements are resolved to the part their ``cid:`` names. A plain
``application/soap+xml`` request (base64 inline) is read too.

Writing: envelopes are built with lxml; a multipart package is written here (a few lines),
because the ``email`` generator rewrites line endings inside binary parts. No SOAP stack
fits a server of these transactions: zeep is a client, spyne has no MTOM server and is not
maintained; the envelope is a few elements.
"""
from __future__ import annotations

import base64
import email
import email.policy
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote

from lxml import etree

from harness import Localized, UnsafeInput, catalogue, parse_xml

M = catalogue(__name__)

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
XOP = "http://www.w3.org/2004/08/xop/include"
MAX_PARTS = 64


class SoapError(Exception):
    """A request the simulator cannot take: answered with a SOAP fault, and recorded."""

    def __init__(self, code: str, subcode: str, reason: Localized) -> None:
        super().__init__(subcode)
        self.code = code  # Sender, Receiver, VersionMismatch
        self.subcode = subcode
        self.reason = reason


@dataclass
class Request:
    envelope: etree._Element
    body: etree._Element | None  # the body's first element
    action: str
    message_id: str
    mtom: bool
    parts: dict[str, bytes] = field(default_factory=dict)  # Content-ID (without <>) -> bytes
    used: set[str] = field(default_factory=set)  # the parts an xop:Include named

    def content(self, el: etree._Element) -> bytes:
        """The bytes an element carries: its ``xop:Include`` part, or its base64 text."""
        inc = el.find(f"{{{XOP}}}Include")
        if inc is not None:
            cid = unquote((inc.get("href") or "").removeprefix("cid:"))
            if cid not in self.parts:
                raise SoapError("Sender", "MissingPart", M("soap.missing_part", cid=cid))
            self.used.add(cid)
            return self.parts[cid]
        try:
            return base64.b64decode("".join((el.text or "").split()), validate=True)
        except ValueError as exc:
            raise SoapError("Sender", "InvalidBase64", M("soap.base64", error=str(exc))) from None


def _params(content_type: str) -> tuple[str, dict[str, str]]:
    msg = email.message_from_string(f"Content-Type: {content_type}\r\n\r\n", policy=email.policy.HTTP)
    return msg.get_content_type(), {k.lower(): v for k, v in msg["Content-Type"].params.items()}


def parse(content_type: str, data: bytes) -> Request:
    """A SOAP 1.2 request, MTOM or not; :class:`SoapError` when it cannot be read."""
    kind, params = _params(content_type or "")
    parts: dict[str, bytes] = {}
    mtom = kind == "multipart/related"
    if mtom:
        if not params.get("boundary"):
            raise SoapError("Sender", "BrokenMime", M("soap.no_boundary"))
        msg = email.message_from_bytes(b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + data,
                                       policy=email.policy.HTTP)
        if msg.defects or not msg.is_multipart():
            raise SoapError("Sender", "BrokenMime", M("soap.broken_mime", defects=", ".join(type(d).__name__ for d in msg.defects) or "-"))
        items = list(msg.iter_parts())
        if not items:
            raise SoapError("Sender", "BrokenMime", M("soap.no_part"))
        if len(items) > MAX_PARTS:
            raise SoapError("Sender", "BrokenMime", M("soap.too_many_parts", count=len(items), limit=MAX_PARTS))
        for n, part in enumerate(items):
            cid = (part["Content-ID"] or f"part-{n}").strip().strip("<>")
            parts[cid] = part.get_payload(decode=True) or b""
        start = (params.get("start") or "").strip().strip("<>")
        root_cid = start if start in parts else next(iter(parts))
        root = parts.pop(root_cid)
    elif kind in ("application/soap+xml", "text/xml", "application/xml"):
        root = data
    else:
        raise SoapError("Sender", "UnsupportedMediaType", M("soap.media_type", media_type=kind or "-"))
    try:
        envelope = parse_xml(root, source="SOAP").getroot()
    except UnsafeInput as exc:
        raise SoapError("Sender", "InvalidXml", exc.detail) from None
    if envelope.tag == f"{{{SOAP11}}}Envelope":
        raise SoapError("VersionMismatch", "VersionMismatch", M("soap.version_11"))
    if envelope.tag != f"{{{SOAP12}}}Envelope":
        raise SoapError("Sender", "NotSoap", M("soap.not_envelope", tag=str(envelope.tag)))
    body = envelope.find(f"{{{SOAP12}}}Body")
    first = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
    header = envelope.find(f"{{{SOAP12}}}Header")
    action = message_id = ""
    if header is not None:
        action = (header.findtext(f"{{{WSA}}}Action") or "").strip()
        message_id = (header.findtext(f"{{{WSA}}}MessageID") or "").strip()
    return Request(envelope, first, action, message_id, mtom, parts)


def envelope(action: str, body: etree._Element | None, *, relates_to: str = "", header: list[etree._Element] = ()) -> etree._Element:
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA})
    head = etree.SubElement(env, f"{{{SOAP12}}}Header")
    etree.SubElement(head, f"{{{WSA}}}Action", {f"{{{SOAP12}}}mustUnderstand": "true"}).text = action
    etree.SubElement(head, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if relates_to:
        etree.SubElement(head, f"{{{WSA}}}RelatesTo").text = relates_to
    for el in header:
        head.append(el)
    b = etree.SubElement(env, f"{{{SOAP12}}}Body")
    if body is not None:
        b.append(body)
    return env


def fault(code: str, subcode: str, reason: str, relates_to: str = "") -> etree._Element:
    f = etree.Element(f"{{{SOAP12}}}Fault")
    c = etree.SubElement(f, f"{{{SOAP12}}}Code")
    etree.SubElement(c, f"{{{SOAP12}}}Value").text = f"soap:{code}"
    etree.SubElement(etree.SubElement(c, f"{{{SOAP12}}}Subcode"), f"{{{SOAP12}}}Value").text = subcode
    etree.SubElement(etree.SubElement(f, f"{{{SOAP12}}}Reason"), f"{{{SOAP12}}}Text", {"{http://www.w3.org/XML/1998/namespace}lang": "fr"}).text = reason
    return envelope("http://www.w3.org/2005/08/addressing/soap/fault", f, relates_to=relates_to)


def include(parent: etree._Element, cid: str) -> None:
    etree.SubElement(parent, f"{{{XOP}}}Include", href=f"cid:{cid}", nsmap={"xop": XOP})


def package(env: etree._Element, attachments: list[tuple[str, bytes, str]] = ()) -> tuple[str, bytes]:
    """(Content-Type, body) of an MTOM package: the envelope, then each (cid, bytes, type)."""
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    root = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
    out = [f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
           f"Content-Transfer-Encoding: binary\r\nContent-ID: <root.message>\r\n\r\n".encode(), root, b"\r\n"]
    for cid, data, media_type in attachments:
        out += [f"--{boundary}\r\nContent-Type: {media_type}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n".encode(), data, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    content_type = (f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; start="<root.message>"; '
                    f'start-info="application/soap+xml"')
    return content_type, b"".join(out)
