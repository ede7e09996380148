"""Our ISO Schematron compiler, feature by feature, run by SaxonC-HE."""
import pytest

from harness_cda.engine import Saxon, read_svrl
from harness_cda.schematron import SchematronError, compile_schema
from harness_cda.selection import alternatives, is_boolean_predicate, select_contexts

HEAD = '<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2" {attrs}><ns prefix="h" uri="urn:hl7-org:v3"/>'
DOC = b"""<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3"/><code code="SYNTH" codeSystem="X"/>
<author><assignedAuthor><code code="A"/></assignedAuthor></author><author><assignedAuthor><code code="B"/></assignedAuthor></author>
</ClinicalDocument>"""


@pytest.fixture(scope="module")
def saxon():
    return Saxon()


def run(saxon, tmp_path, body, *, attrs="", doc=DOC, phase=None, files=None):
    for name, text in (files or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sch = tmp_path / "main.sch"
    sch.write_text(HEAD.format(attrs=attrs) + body + "</schema>")
    compiled = compile_schema(sch, phase)
    xsl = tmp_path / f"main-{phase}.xsl"
    xsl.write_bytes(compiled.xslt)
    saxon._executables.pop(str(xsl), None)
    documents = {param: str(tmp_path / file) for param, file in compiled.documents.items()}
    return compiled, read_svrl(saxon.run(str(xsl), saxon.parse(doc), documents))


def texts(items):
    return [i.text for i in items]


def test_only_the_first_matching_rule_of_a_pattern_fires(saxon, tmp_path):
    body = """<pattern id="p1">
      <rule context="h:ClinicalDocument"><assert test="false()">first</assert></rule>
      <rule context="h:ClinicalDocument"><assert test="false()">second (never)</assert></rule>
      <rule context="h:*"><assert test="self::h:ClinicalDocument or false()">catch-all <name/></assert></rule>
    </pattern>
    <pattern id="p2"><rule context="h:ClinicalDocument"><report test="true()">other pattern</report></rule></pattern>"""
    _, items = run(saxon, tmp_path, body)
    assert "second (never)" not in texts(items)
    assert texts(items).count("first") == 1
    assert "other pattern" in texts(items)
    assert [i.kind for i in items if i.text == "other pattern"] == ["successful-report"]
    # every other element reached the catch-all rule, which names the element
    assert {t for t in texts(items) if t.startswith("catch-all")} == {
        "catch-all id", "catch-all code", "catch-all author", "catch-all assignedAuthor"}


def test_abstract_patterns_substitute_parameters_whole_names_first(saxon, tmp_path):
    body = """<pattern id="inJdv" abstract="true">
      <rule context="$elt"><assert test="@code = $allowed">[<value-of select="$label"/>] <value-of select="@code"/> not in $allowed</assert></rule>
    </pattern>
    <pattern is-a="inJdv" id="authors"><param name="elt" value="h:author/h:assignedAuthor/h:code"/>
      <param name="allowed" value="('A')"/><param name="label" value="'author code'"/></pattern>
    <pattern is-a="inJdv" id="doc-code"><param name="elt" value="h:ClinicalDocument/h:code"/>
      <param name="allowed" value="('SYNTH')"/><param name="label" value="'type'"/></pattern>"""
    compiled, items = run(saxon, tmp_path, body)
    assert compiled.patterns == ["authors", "doc-code"]
    assert texts(items) == ["[author code] B not in $allowed"]  # text content is not substituted
    assert items[0].pattern == "authors"


def test_abstract_rules_by_named_template_and_by_inlining(saxon, tmp_path):
    body = """<pattern>
      <rule abstract="true" id="HasCode"><assert test="@code">no code on <name/></assert><extends rule="Base"/></rule>
      <rule abstract="true" id="Base"><let name="n" value="local-name()"/><assert test="$n != 'code' or @code != 'B'">base: B on <value-of select="$n"/></assert></rule>
      <rule abstract="true" id="UsesCaller"><assert test="$expected = @code">caller wants <value-of select="$expected"/></assert></rule>
      <rule context="h:assignedAuthor/h:code"><let name="expected" value="'A'"/><extends rule="HasCode"/><extends rule="UsesCaller"/></rule>
    </pattern>"""
    compiled, items = run(saxon, tmp_path, body)
    assert sorted(texts(items)) == ["base: B on code", "caller wants A"]
    xslt = compiled.xslt.decode()
    assert xslt.count('<xsl:template name="abstract-rule-') == 2  # HasCode and Base shared, UsesCaller inlined
    assert "call-template" in xslt


def test_lets_at_schema_pattern_and_rule_level_and_phases(saxon, tmp_path):
    body = """<let name="root" value="'1.2.3'"/>
    <phase id="quick"><active pattern="ids"/></phase>
    <phase id="full"><let name="wanted" value="'SYNTH'"/><active pattern="ids"/><active pattern="codes"/></phase>
    <pattern id="ids"><let name="idEl" value="//h:id"/>
      <rule context="h:ClinicalDocument"><let name="r" value="$idEl/@root"/><report test="$r = $root">id <value-of select="$r"/></report></rule></pattern>
    <pattern id="codes"><rule context="h:ClinicalDocument/h:code"><report test="@code = $wanted">code <value-of select="@code"/></report></rule></pattern>"""
    compiled, items = run(saxon, tmp_path, body, attrs='defaultPhase="quick"')
    assert compiled.phase == "quick" and texts(items) == ["id 1.2.3"]
    compiled, items = run(saxon, tmp_path, body, attrs='defaultPhase="quick"', phase="full")
    assert texts(items) == ["id 1.2.3", "code SYNTH"]
    with pytest.raises(SchematronError):
        run(saxon, tmp_path, body, phase="nope")


def test_diagnostics_roles_and_attribute_contexts(saxon, tmp_path):
    body = """<pattern><rule context="@code" role="warning">
        <assert test=". != 'B'" role="warning" id="no-B" diagnostics="d1">code B on <name path=".."/></assert></rule></pattern>
      <diagnostics><diagnostic id="d1">found <value-of select="."/></diagnostic></diagnostics>"""
    _, items = run(saxon, tmp_path, body)
    assert [(i.id, i.role, i.text) for i in items] == [("no-B", "warning", "code B on code")]
    assert "assignedAuthor" in items[0].location


def test_includes_resolve_by_case_when_needed_and_fail_clearly(saxon, tmp_path):
    files = {"inc/Rules.sch": '<pattern xmlns="http://purl.oclc.org/dsdl/schematron" id="inc">'
                              '<rule context="h:id"><report test="@root">included</report></rule></pattern>'}
    compiled, items = run(saxon, tmp_path, '<include href="inc/rules.sch"/>', files=files)
    assert texts(items) == ["included"]
    assert [q.kind for q in compiled.quirks] == ["include-case"]
    (tmp_path / "empty.sch").write_text("")
    with pytest.raises(SchematronError) as exc:
        run(saxon, tmp_path, '<include href="empty.sch"/>')
    assert "empty file" in exc.value.message("en")
    with pytest.raises(SchematronError) as exc:
        run(saxon, tmp_path, '<include href="absent.sch"/>')
    assert "not found" in exc.value.message("en")


def test_document_function_resolves_against_the_schema_folder(saxon, tmp_path):
    files = {"jdv/codes.xml": '<ValueSet xmlns="urn:ihe:iti:svs:2008"><Concept code="A"/></ValueSet>'}
    body = """<ns prefix="svs" uri="urn:ihe:iti:svs:2008"/><pattern><rule context="h:assignedAuthor/h:code">
      <assert test="document('jdv/codes.xml')//svs:Concept[@code = current()/@code]">not in set: <value-of select="@code"/></assert>
    </rule></pattern>"""
    _, items = run(saxon, tmp_path, body, files=files)
    assert texts(items) == ["not in set: B"]


def test_value_set_reads_are_preloaded_parameters_with_the_read_as_default(saxon, tmp_path, monkeypatch):
    files = {"jdv/codes.xml": '<ValueSet xmlns="urn:ihe:iti:svs:2008"><Concept code="A"/></ValueSet>'}
    body = """<ns prefix="svs" uri="urn:ihe:iti:svs:2008"/><let name="jdv" value="'jdv/codes.xml'"/><let name="shadowed" value="'jdv/codes.xml'"/>
      <pattern id="by-variable"><rule context="h:assignedAuthor/h:code">
        <assert test="@code = document($jdv)//svs:Concept/@code">not in set: <value-of select="@code"/></assert></rule></pattern>
      <pattern id="by-literal"><rule context="h:assignedAuthor/h:code">
        <assert test="@code = doc('jdv/codes.xml')//svs:Concept/@code">literal: <value-of select="@code"/></assert></rule></pattern>
      <pattern id="shadowed"><rule context="h:ClinicalDocument"><let name="shadowed" value="'jdv/other.xml'"/>
        <report test="ends-with($shadowed, 'other.xml') and doc-available($shadowed) = false()">own variable</report></rule></pattern>"""
    parsed = []
    original = saxon._file
    monkeypatch.setattr(saxon, "_file", lambda path: parsed.append(path) or original(path))
    compiled, items = run(saxon, tmp_path, body, files=files)
    assert sorted(compiled.documents.values()) == ["jdv/codes.xml", "jdv/codes.xml"]
    assert b"document($shadowed)" not in compiled.xslt and b'select="doc($jdv)"' in compiled.xslt
    assert texts(items) == ["not in set: B", "literal: B", "own variable"]
    assert sorted(parsed) == sorted(str(tmp_path / "jdv" / "codes.xml") for _ in range(2))


@pytest.mark.parametrize("pattern, expression", [
    ("h:a", "//h:a"), ("/h:a", "/h:a"), ("@code", "//@code"), ("h:a[@x='1|2'] | /h:b", "//h:a[@x='1|2'] | /h:b"),
    ("*[h:t/@root=('1','2')]", "//*[h:t/@root=('1','2')]"),
])
def test_patterns_become_selecting_expressions(pattern, expression):
    assert " | ".join(alternatives(pattern)) == expression


NS = {"h": "urn:hl7-org:v3", "x": "urn:other"}


@pytest.mark.parametrize("contexts, expression", [
    (["/h:a/h:b", "/h:a//h:c"], "/h:a/(h:b | descendant-or-self::node()/h:c)"),
    (["/h:a", "/h:b"], "/h:a | /h:b"),
    (["/h:a", "/h:a/h:b"], "/h:a/(. | h:b)"),
    (["/"], "/"),
    (["//h:D[t/u='a/b|c']/h:x", "//h:D[t/u='a/b|c']/h:y[@z]"], "//h:D[t/u='a/b|c']/(h:x | h:y[@z])"),
    (["h:a", "h:b"], "//h:a | //h:b"),
    (["*[h:templateId/@root='1']/h:a", "*[h:templateId/@root='1']", "*[h:templateId/@root='2']"],
     "key('harness-template-root', '1')/parent::*/(h:a | .) | key('harness-template-root', '2')/parent::*"),
])
def test_contexts_sharing_leading_steps_are_factored(contexts, expression):
    assert select_contexts(contexts, NS)[0] == expression


@pytest.mark.parametrize("context, expression", [
    ("*[h:templateId/@root='1.2']", "key('harness-template-root', '1.2')/parent::*"),
    ('*[h:templateId/@root = "1.2"][h:code]/h:entry', "key('harness-template-root', '1.2')/parent::*[h:code]/h:entry"),
    ("h:section[./h:templateId[@root='1.2']]", "key('harness-template-root', '1.2')/parent::Q{urn:hl7-org:v3}section"),
    ("x:a[x:templateId/@root='1']", "//x:a[x:templateId/@root='1']"),
    # positional or unknown predicates keep the child axis: //h:a[1] is not key(...)[1]
    ("*[h:templateId/@root='1'][1]", "//*[h:templateId/@root='1'][1]"),
    ("*[h:templateId/@root='1'][position() = 2]", "//*[h:templateId/@root='1'][position() = 2]"),
    ("*[h:templateId/@root='1'][$n]", "//*[h:templateId/@root='1'][$n]"),
    ("*[h:templateId/@root='1'][count(h:b)]", "//*[h:templateId/@root='1'][count(h:b)]"),
    # not a templateId lookup: kept as written
    ("h:a[@k='v']", "//h:a[@k='v']"), ("*[@x]", "//*[@x]"), ("u:a[h:templateId/@root='1']", "//u:a[h:templateId/@root='1']"),
    ("*:a", "//*:a"), ("@code", "//@code"),
])
def test_first_steps_are_looked_up_in_an_index_when_that_keeps_their_meaning(context, expression):
    assert select_contexts([context], NS)[0] == expression


@pytest.mark.parametrize("predicate, boolean", [
    ("@x = '1'", True), ("not(h:a)", True), ("h:a/@b", True), ("h:a and h:b", True), ("@x", True), (".", True),
    ("1", False), ("last()", False), ("position() > 1", False), ("$i", False), ("count(h:a)", False), ("h:a + 1", False),
])
def test_only_predicates_that_cannot_be_positions_move_onto_an_index(predicate, boolean):
    assert is_boolean_predicate(predicate) is boolean


def test_indexed_selection_fires_the_same_rules_as_the_plain_one(saxon, tmp_path):
    doc = b"""<ClinicalDocument xmlns="urn:hl7-org:v3"><templateId root="1.2"/>
    <component><section><templateId root="S"/><entry><act><templateId root="A"/><code code="c1"/></act></entry>
    <entry><act><templateId root="A"/><templateId root="B"/><code code="c2"/></act></entry></section></component>
    <component><section><templateId root="S"/><code code="c3"/></section></component></ClinicalDocument>"""
    body = """<pattern id="p">
      <rule context="*[h:templateId/@root='B']"><report test="true()">B <value-of select="h:code/@code"/></report></rule>
      <rule context="*[h:templateId/@root='A']"><report test="true()">A <value-of select="h:code/@code"/></report></rule>
      <rule context="h:section[h:templateId/@root='S']/h:code"><report test="true()">S code <value-of select="@code"/></report></rule>
      <rule context="h:entry[1]"><report test="true()">first entry</report></rule>
    </pattern>"""
    compiled, items = run(saxon, tmp_path, body, doc=doc)
    assert b"key('harness-template-root'" in compiled.xslt
    assert texts(items) == ["first entry", "A c1", "B c2", "S code c3"]


def test_absolute_and_root_contexts_fire(saxon, tmp_path):
    body = """<pattern id="p">
      <rule context="/"><report test="true()">root</report></rule>
      <rule context="/h:ClinicalDocument"><report test="true()">document</report></rule>
      <rule context="/h:Other"><report test="true()">never</report></rule>
      <rule context="/h:ClinicalDocument/h:author[2]//h:code"><report test="true()">second author <value-of select="@code"/></report></rule>
    </pattern>"""
    _, items = run(saxon, tmp_path, body)
    assert texts(items) == ["root", "document", "second author B"]


def test_braces_in_tests_reach_the_svrl_unchanged(saxon, tmp_path):
    body = """<pattern id="p"><rule context="h:id">
      <assert test="matches(@root, '^[0-9]{4}$')">root of four digits</assert></rule></pattern>"""
    _, items = run(saxon, tmp_path, body)
    assert [i.test for i in items] == ["matches(@root, '^[0-9]{4}$')"]


def test_factored_selection_fires_the_same_rules(saxon, tmp_path):
    body = """<pattern id="p">
      <rule context="/h:ClinicalDocument[h:id]/h:author/h:assignedAuthor"><report test="true()">aa</report></rule>
      <rule context="/h:ClinicalDocument[h:id]/h:author//h:code"><report test="true()">code <value-of select="@code"/></report></rule>
      <rule context="/h:ClinicalDocument[h:id]/h:code"><report test="true()">doc code</report></rule>
    </pattern>"""
    _, items = run(saxon, tmp_path, body)
    assert texts(items) == ["doc code", "aa", "code A", "aa", "code B"]
