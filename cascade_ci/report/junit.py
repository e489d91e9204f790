"""Verdict -> JUnit XML that validates against Jenkins xunit's `junit-10.xsd`.

One <testsuite> per gate and one <testcase> per check, named `cascade.<gate>.<table>` / check name (stable
across runs). A failing `error` check is a <failure>; a gate that could not run is one <testcase name="gate">
with an <error>, so `tests` counts exactly the verdict's `check_count`; a failing `warn` check is a
<skipped type="warning" message="warning: ...">: every publisher lists it as skipped, none counts it as a
failure. Every testcase carries a `time` in seconds with three decimals (the gate's duration shared out).
The schema has no file or line on a testcase: the location is the `at:` line of the failure's text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from xml.etree import ElementTree

from cascade_ci.verdict import GateResult

if TYPE_CHECKING:
    from cascade_ci.verdict import Check, Verdict

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# What XML 1.0 cannot carry at all, not even as a character reference.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
WARNING = "warning"


def _text(value: object) -> str:
    """`value` as text XML can carry: a character it cannot is written as its Python escape (`\\x07`)."""
    return _NOT_XML.sub(lambda match: repr(match.group())[1:-1], str(value))


def _folded(text: str) -> str:
    """Anything outside [A-Za-z0-9_.-] folded to `_`."""
    return _UNSAFE.sub("_", text)


def _seconds(milliseconds: int) -> str:
    """`1234` -> `1.234`: the schema's time pattern takes at most three decimals."""
    return f"{milliseconds // 1000}.{milliseconds % 1000:03d}"


def _milliseconds(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _shares(total_s: float, count: int) -> list[int]:
    """`total_s` shared out over `count` testcases in whole milliseconds that add up to the rounded total."""
    share, rest = divmod(_milliseconds(total_s), count)
    return [share + (index < rest) for index in range(count)]


def _detail(check: Check) -> str:
    lines = [check.message] if check.message else []
    if check.observed is not None or check.expected is not None:
        lines += [f"observed: {check.observed}", f"expected: {check.expected}"]
    if check.file:
        lines.append(f"at: {check.file}" + (f":{check.line}" if check.line else ""))
    return _text("\n".join(lines))


def _case(check: Check, milliseconds: int) -> ElementTree.Element:
    classname = _folded(f"cascade.{check.gate}.{check.table}")
    case = ElementTree.Element("testcase", name=_text(check.name), classname=classname, time=_seconds(milliseconds))
    if check.blocks:
        outcome = ElementTree.SubElement(case, "failure", message=_text(check.message), type=str(check.severity))
        outcome.text = _detail(check)
    elif check.warns:
        outcome = ElementTree.SubElement(case, "skipped", message=_text(f"warning: {check.message}"), type=WARNING)
        outcome.text = _detail(check)
    return case


def _fault(gate: GateResult, milliseconds: int) -> ElementTree.Element:
    """The one errored testcase of a gate that could not run."""
    error = gate.error or ""
    case = ElementTree.Element(
        "testcase", name="gate", classname=_folded(f"cascade.{gate.gate}"), time=_seconds(milliseconds)
    )
    first = next((line for line in error.splitlines() if line.strip()), "the gate could not run")
    outcome = ElementTree.SubElement(case, "error", message=_text(first), type="infrastructure")
    outcome.text = _text(error)
    return case


def _suite(gate: GateResult, properties: dict[str, str], timestamp: str) -> ElementTree.Element:
    count = len(gate.checks) + (gate.error is not None)
    shares = _shares(gate.duration_s, count) if count else []
    cases = [_case(check, share) for check, share in zip(gate.checks, shares, strict=False)]
    if gate.error is not None:
        cases.append(_fault(gate, shares[-1]))
    suite = ElementTree.Element(
        "testsuite",
        name=_folded(f"cascade.{gate.gate}"),
        tests=str(len(cases)),
        failures=str(sum(check.blocks for check in gate.checks)),
        errors=str(int(gate.error is not None)),
        skipped=str(sum(check.warns for check in gate.checks)),
        time=_seconds(_milliseconds(gate.duration_s)),
        timestamp=_text(timestamp),
    )
    listed = ElementTree.SubElement(suite, "properties")
    for name, value in properties.items():
        ElementTree.SubElement(listed, "property", name=name, value=_text(value))
    suite.extend(cases)
    return suite


def render(verdict: Verdict) -> str:
    """The JUnit document, in ASCII (other characters as references); run id, attempt, branch and hashes go in
    each suite's <properties>."""
    properties = {
        "cascade.run_id": verdict.run_id,
        "cascade.attempt": str(verdict.attempt),
        "cascade.branch": verdict.branch,
        "cascade.validated_hash": verdict.validated_hash,
        "cascade.base_hash": verdict.base_hash,
        "cascade.verdict": verdict.outcome,
    }
    gates = verdict.gates or (GateResult(gate="verdict", error="no gate ran: a verdict without gates blocks"),)
    suites = [_suite(gate, properties, verdict.started_at) for gate in gates]
    root = ElementTree.Element(
        "testsuites",
        name="cascade",
        tests=str(sum(int(suite.get("tests", 0)) for suite in suites)),
        failures=str(sum(int(suite.get("failures", 0)) for suite in suites)),
        errors=str(sum(int(suite.get("errors", 0)) for suite in suites)),
        time=_seconds(sum(_milliseconds(gate.duration_s) for gate in gates)),
    )
    root.extend(suites)
    ElementTree.indent(root, space="  ")
    return DECLARATION + ElementTree.tostring(root, encoding="us-ascii").decode("ascii") + "\n"
