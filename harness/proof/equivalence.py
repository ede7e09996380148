"""Equivalence of proofs: may a requirement's earlier proof be reused for a new referencing?

``harness equivalence OLD.zip NEW.zip`` compares two bundles of the same product (same
``product.id``; names and versions may differ) requirement by requirement. A requirement's
proof is equivalent when, for every scenario proving it in both bundles:

- the requirement and the scenario are defined alike (the scenario file's path aside);
- the rules are the same: the version of the harness core and of each plugin that provides one
  of the scenario's steps (the verifier's installed plugins say which owns what), and, when
  both bundles record them, the fingerprints of their rule files (``rules``: a rule may change
  without a version number changing);
- the component concerned is the same build: a component the targets declare
  (``[product.components]``, named like a scenario tag: ``dmp = "build 4.2.0+a1b2c3"``)
  has the same fingerprint in both, or is declared in neither;
- the evidence is the same: the artefacts the checks read have the same SHA-256
  (**same evidence**), or, when they were collected again (exchanges carry their times,
  documents their identifiers), every check reached the same verdict on the same number of
  assertions with the same findings, loopback ports, masked values and the product's name
  set aside (**same conclusions**, the weaker basis, said as such);
- the verdict is the same, and it is the one the checks give again: both bundles are replayed
  offline with the installed plugins, and a requirement one of whose scenarios (or itself)
  replays otherwise than recorded is not equivalent (an unsigned bundle re-sealed after its
  verdicts were edited offers nothing to reuse).

An equivalent requirement whose earlier verdict was PASS is *reusable*: the earlier proof
stands. Anything else lists what differs.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evidence.bundle import Bundle
from ..reporting.compare import finding_key, step_keys
from ..messages import Localized, catalogue

M = catalogue(__name__)

SAME_EVIDENCE, SAME_CONCLUSIONS = "same-evidence", "same-conclusions"


@dataclass
class RequirementEquivalence:
    requirement: str
    old_verdict: str
    new_verdict: str
    scenarios: list[str]
    basis: str = ""  # SAME_EVIDENCE or SAME_CONCLUSIONS when equivalent
    differences: list[Localized] = field(default_factory=list)

    @property
    def equivalent(self) -> bool:
        return not self.unproven and not self.differences and bool(self.basis)

    @property
    def reusable(self) -> bool:
        return self.equivalent and self.old_verdict == "PASS"

    @property
    def unproven(self) -> bool:
        """Neither bundle ran a scenario for it: no proof to reuse, nothing that differs."""
        return self.old_verdict == self.new_verdict == "NOT_RUN"

    def status(self) -> Localized:
        if self.unproven:
            return M("eq.status.unproven")
        if not self.equivalent:
            return M("eq.status.differs")
        if not self.reusable:
            return M("eq.status.equivalent_not_pass", verdict=self.old_verdict)
        return M("eq.status.reuse") if self.basis == SAME_EVIDENCE else M("eq.status.reuse_conclusions")

    def to_json(self) -> dict[str, Any]:
        return {"requirement": self.requirement, "equivalent": self.equivalent, "reusable": self.reusable, "unproven": self.unproven,
                "basis": self.basis or None,
                "old_verdict": self.old_verdict, "new_verdict": self.new_verdict, "scenarios": self.scenarios,
                "status": self.status().texts(), "differences": [d.texts() for d in self.differences]}


@dataclass
class Equivalence:
    old: str
    new: str
    product: str
    requirements: list[RequirementEquivalence]
    notes: list[Localized] = field(default_factory=list)

    def summary(self) -> Localized:
        same = sum(r.equivalent for r in self.requirements)
        reuse = sum(r.reusable for r in self.requirements)
        unproven = sum(r.unproven for r in self.requirements)
        return M("eq.summary", old=self.old, new=self.new, total=len(self.requirements), equivalent=same, reusable=reuse,
                 differ=len(self.requirements) - same - unproven, unproven=unproven)

    @property
    def all_equivalent(self) -> bool:
        """Every requirement either bundle proves is equivalent (and at least one is)."""
        proven = [r for r in self.requirements if not r.unproven]
        return bool(proven) and all(r.equivalent for r in proven)

    def rows(self, lang: str) -> list[dict[str, Any]]:
        """The HTML report's section."""
        return [{"requirement": r.requirement, "equivalent": r.equivalent, "unproven": r.unproven, "status": r.status().render(lang),
                 "differences": [d.render(lang) for d in r.differences]} for r in self.requirements]

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "product": self.product, "summary": self.summary().texts(),
                "notes": [n.texts() for n in self.notes], "requirements": [r.to_json() for r in self.requirements]}

    def render(self, lang: str) -> str:
        lines = [self.summary().render(lang)]
        lines += ["  ! " + n.render(lang) for n in self.notes]
        for r in self.requirements:
            lines.append(f"  {r.requirement:<22} {r.old_verdict:>14} -> {r.new_verdict:<14} {r.status().render(lang)}")
            lines += [f"      - {d.render(lang)}" for d in r.differences]
        return "\n".join(lines) + "\n"


def _definition(scenario: dict) -> dict:
    return {k: v for k, v in scenario.items() if k != "file"}


def _owners() -> dict[str, set[str]]:
    """Step name -> the plugins providing it, from the verifier's installed plugins (empty when
    they cannot be loaded: every plugin's version is then compared)."""
    try:
        from ..running.plugins import get_plugin_manager
        from ..running.steps import build_registry

        registry = build_registry(get_plugin_manager())
    except Exception:
        return {}
    out: dict[str, set[str]] = {}
    for (_kind, step), plugin in registry.owners.items():
        out.setdefault(step, set()).add(plugin)
    return out


def _components(manifest: dict) -> dict[str, str]:
    product = manifest.get("target", {}).get("product", {})
    components = product.get("components", {})
    return {str(k): str(v) for k, v in components.items()} if isinstance(components, dict) else {}


class _Pair:
    """The two bundles, and each scenario's comparison, made once however many requirements
    the scenario proves."""

    def __init__(self, old: Bundle, new: Bundle, owners: dict[str, set[str]], equate: list[tuple[str, str]]) -> None:
        self.old, self.new, self.owners, self.equate = old, new, owners, equate
        mo, mn = old.manifest, new.manifest
        self.mo, self.mn = mo, mn
        self.scen_o = {s["id"]: s for s in mo.get("scenarios", [])}
        self.scen_n = {s["id"]: s for s in mn.get("scenarios", [])}
        self.res_o = {r.scenario: r for r in old.record.results}
        self.res_n = {r.scenario: r for r in new.record.results}
        self.comp_o, self.comp_n = _components(mo), _components(mn)
        self._done: dict[str, tuple[str, list[Localized]]] = {}

    def scenario(self, sid: str) -> tuple[str, list[Localized]]:
        """(basis, differences) of one scenario: a basis when nothing differs."""
        if sid not in self._done:
            d: list[Localized] = []
            basis = self._compare(sid, d)
            self._done[sid] = ("" if d else basis, d)
        return self._done[sid]

    def _compare(self, sid: str, d: list[Localized]) -> str:
        mo, mn = self.mo, self.mn
        so, sn = self.scen_o.get(sid), self.scen_n.get(sid)
        if so is None or sn is None or _definition(so) != _definition(sn):
            changed = sorted(k for k in set(_definition(so or {})) | set(_definition(sn or {})) if (so or {}).get(k) != (sn or {}).get(k))
            d.append(M("eq.definition", scenario=sid, keys=", ".join(changed)))
            return ""
        steps = set(sn.get("collect", [])) | set(sn.get("checks", []))
        plugins = (sorted({p for s in steps for p in self.owners.get(s, ())}) if self.owners
                   else sorted(set(mo.get("plugins", {})) | set(mn.get("plugins", {}))))
        core_o, core_n = mo.get("harness", {}).get("version"), mn.get("harness", {}).get("version")
        if core_o != core_n:
            d.append(M("eq.rules_core", scenario=sid, old=core_o or "-", new=core_n or "-"))
        for p in plugins:
            vo, vn = mo.get("plugins", {}).get(p), mn.get("plugins", {}).get(p)
            if vo != vn:
                d.append(M("eq.rules_plugin", scenario=sid, plugin=p, old=vo or "-", new=vn or "-"))
        # the rules' code, when both bundles fingerprint it (a version number may stay the
        # same across a change of rules)
        rules_o, rules_n = mo.get("rules", {}), mn.get("rules", {})
        if rules_o and rules_n:
            for p in ["harness", *plugins]:
                if rules_o.get(p) != rules_n.get(p):
                    d.append(M("eq.rules_code", scenario=sid, plugin=p))
        elif rules_o or rules_n:
            d.append(M("eq.rules_unknown", scenario=sid))
        for tag in sn.get("tags", []):
            if (tag in self.comp_o or tag in self.comp_n) and self.comp_o.get(tag) != self.comp_n.get(tag):
                d.append(M("eq.component", scenario=sid, component=tag, old=self.comp_o.get(tag, "-"), new=self.comp_n.get(tag, "-")))
        a, b = self.res_o.get(sid), self.res_n.get(sid)
        if a is None or b is None:
            d.append(M("eq.scenario_missing", scenario=sid))
            return ""
        if a.inputs == b.inputs and a.inputs:
            return SAME_EVIDENCE
        if not a.inputs and not b.inputs:
            d.append(M("eq.no_evidence", scenario=sid, verdict=b.verdict.value))
            return ""
        same_steps = step_keys(a, self.equate) == step_keys(b, self.equate)
        fo = Counter(finding_key(f, self.equate) for f in self.old.findings(sid))
        fn = Counter(finding_key(f, self.equate) for f in self.new.findings(sid))
        if same_steps and fo == fn:
            return SAME_CONCLUSIONS
        d.append(M("eq.evidence", scenario=sid, count=sum(1 for k in set(a.inputs) | set(b.inputs) if a.inputs.get(k) != b.inputs.get(k))))
        if not same_steps:
            for co, cn in zip(a.checks, b.checks):
                if (co.name, co.verdict, co.assertions) != (cn.name, cn.verdict, cn.assertions):
                    d.append(M("eq.check", scenario=sid, check=cn.name, old=f"{co.verdict.value}/{co.assertions}",
                               new=f"{cn.verdict.value}/{cn.assertions}"))
        for key in sorted((fo - fn).elements())[:10]:
            d.append(M("eq.finding_gone", scenario=sid, rule=key[1], location=key[4]))
        for key in sorted((fn - fo).elements())[:10]:
            d.append(M("eq.finding_new", scenario=sid, rule=key[1], location=key[4]))
        return ""


def compare_proofs(old_path: Path, new_path: Path, assembly: Any = None) -> Equivalence:
    """``assembly``: the installed plugins that replay both bundles (assembled when not given)."""
    from .replay import replay_bundle

    if assembly is None:
        from ..running.assembly import assemble

        assembly = assemble()
    owners = _owners()
    with Bundle(old_path) as old, Bundle(new_path) as new:
        replays = ((M("eq.side.old"), replay_bundle(old, assembly)), (M("eq.side.new"), replay_bundle(new, assembly)))
        mo, mn = old.manifest, new.manifest
        po, pn = mo.get("target", {}).get("product", {}), mn.get("target", {}).get("product", {})
        out = Equivalence(Path(old_path).name, Path(new_path).name, str(pn.get("id", "")), [])
        other_product = po.get("id") != pn.get("id")
        if other_product:
            out.notes.append(M("eq.other_product", old=po.get("id", "-"), new=pn.get("id", "-")))
        equate = [(str(po["name"]), str(pn["name"]))] if po.get("name") and pn.get("name") and po["name"] != pn["name"] else []
        pair = _Pair(old, new, owners, equate)
        subjects = set(mo.get("requirements", {})) | set(mn.get("requirements", {})) | {r.scenario for r in old.record.results} | {
            r.scenario for r in new.record.results}
        for side, replay in replays:  # what replay says of the rest (summaries, reports): said, verdicts aside
            out.notes += [M("eq.replay", side=side, subject=x.subject, recorded=x.recorded, replayed=x.replayed, detail=x.detail)
                          for x in replay.differences if x.subject not in subjects]
        for req in sorted(set(mo.get("requirements", {})) | set(mn.get("requirements", {}))):
            ro, rn = mo.get("requirements", {}).get(req), mn.get("requirements", {}).get(req)
            row = RequirementEquivalence(req, (ro or {}).get("verdict", "-"), (rn or {}).get("verdict", "-"),
                                         sorted(set((ro or {}).get("scenarios", [])) | set((rn or {}).get("scenarios", []))))
            out.requirements.append(row)
            d = row.differences
            if other_product:
                d.append(M("eq.other_product", old=po.get("id", "-"), new=pn.get("id", "-")))
                continue
            if row.unproven:
                continue
            if ro is None or rn is None:
                d.append(M("eq.requirement_only", side=M("eq.side.old") if ro is None else M("eq.side.new")))
                continue
            if {k: ro.get(k) for k in ("text", "source", "level")} != {k: rn.get(k) for k in ("text", "source", "level")}:
                d.append(M("eq.requirement_changed"))
            if set(ro["scenarios"]) != set(rn["scenarios"]):
                d.append(M("eq.scenarios_differ", old=", ".join(ro["scenarios"]) or "-", new=", ".join(rn["scenarios"]) or "-"))
            if row.old_verdict != row.new_verdict:
                d.append(M("eq.verdict", old=row.old_verdict, new=row.new_verdict))
            for side, replay in replays:
                for subject in [req, *row.scenarios]:
                    d.extend(M("eq.replay", side=side, subject=subject, recorded=x.recorded, replayed=x.replayed, detail=x.detail)
                             for x in replay.differs(subject))
            bases = []
            for sid in sorted(set(ro["scenarios"]) & set(rn["scenarios"])):
                basis, differences = pair.scenario(sid)
                d.extend(differences)
                if basis:
                    bases.append(basis)
            if not d:
                row.basis = SAME_CONCLUSIONS if SAME_CONCLUSIONS in bases else SAME_EVIDENCE if bases else ""
                if not bases:
                    d.append(M("eq.nothing_compared"))
    return out
