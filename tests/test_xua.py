"""The XUA assertion reader of the XDS library (the DMP's VIHF): what a DMP call says of who
makes it, read alike by the DMP plugin and the Pro Santé Connect plugin."""
from harness import parse_xml
from harness_psc.services import _mode
from harness_xds import xua

# the shape of the VIHF the ANS's PSC gateway writes (prosanteconnect/generate-VIHF): the
# mode's attribute spelt "Authentification_mode", the names in subject-id, no signature
GATEWAY = b"""<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header>
<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_1" Version="2.0">
 <saml2:Subject><saml2:NameID> 899700366240 </saml2:NameID></saml2:Subject>
 <saml2:AuthnStatement><saml2:AuthnContext>
  <saml2:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient</saml2:AuthnContextClassRef>
  <saml2:AuthnContextDecl>APP_BROWSER_AUTH</saml2:AuthnContextDecl></saml2:AuthnContext></saml2:AuthnStatement>
 <saml2:AttributeStatement>
  <saml2:Attribute Name="urn:oasis:names:tc:xspa:1.0:subject:subject-id"><saml2:AttributeValue>KIT   DOC0036624</saml2:AttributeValue></saml2:Attribute>
  <saml2:Attribute Name="Authentification_mode"><saml2:AttributeValue>INDIRECTE</saml2:AttributeValue></saml2:Attribute>
 </saml2:AttributeStatement></saml2:Assertion></wsse:Security></soap:Header><soap:Body/></soap:Envelope>"""


def test_the_assertion_of_a_call_is_found_and_read_as_written():
    found = xua.find(parse_xml(GATEWAY).getroot())
    said = xua.read(found)
    assert said.subject == "899700366240"  # spaces around the identifier are not part of it
    assert said.first(xua.SUBJECT_ID) == "KIT DOC0036624"
    assert (said.authn_class, said.authn_decl) == ("urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient", "APP_BROWSER_AUTH")
    assert said.first("absent") == ""


def test_the_authentication_mode_is_read_under_either_spelling_of_its_name():
    said = xua.read(xua.find(parse_xml(GATEWAY).getroot()))
    assert _mode(said) == "INDIRECTE"  # generate-VIHF's "Authentification_mode"
    said.attributes = {"Authentification_Mode": ["INDIRECTE_RENFORCEE"]}  # DRIMbox's, the DMP guide's
    assert _mode(said) == "INDIRECTE_RENFORCEE"
    said.attributes = {}
    assert _mode(said) is None


def test_an_envelope_without_security_header_has_no_assertion():
    assert xua.find(parse_xml(b"<e xmlns='urn:x'><b/></e>").getroot()) is None
