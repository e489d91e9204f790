"""Verdict -> JUnit XML: one <testsuite> per gate, one <testcase> per check, names stable across runs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cascade_ci.verdict import Check, GateResult, Verdict

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _classname(check: Check) -> str:
    """`cascade.<gate>.<namespace>.<table>`, with anything outside [A-Za-z0-9_.-] folded to `_`."""
    return _UNSAFE.sub("_", f"cascade.{check.gate}.{check.table}")


def _case(check: Check) -> object:
    from junit_xml import TestCase

    case = TestCase(name=check.name, classname=_classname(check), elapsed_sec=0.0, file=check.file, line=check.line)
    detail = check.message
    if check.observed is not None or check.expected is not None:
        detail += f"\nobserved: {check.observed}\nexpected: {check.expected}"
    if check.blocks:
        case.add_failure_info(message=check.message, output=detail, failure_type=check.severity)
    elif check.warns:
        case.stdout = f"warning: {detail}"
    return case


def _suite(gate: GateResult, properties: dict[str, str]) -> object:
    from junit_xml import TestCase, TestSuite

    cases = [_case(check) for check in gate.checks]
    if gate.error is not None:
        fault = TestCase(name="gate", classname=f"cascade.{gate.gate}", elapsed_sec=gate.duration_s)
        fault.add_error_info(message=gate.error.splitlines()[0], output=gate.error, error_type="infrastructure")
        cases.append(fault)
    if cases:
        cases[0].elapsed_sec = gate.duration_s
    return TestSuite(name=f"cascade.{gate.gate}", test_cases=cases, properties=properties)


def render(verdict: Verdict) -> str:
    """The JUnit document; run id, attempt, branch and hash go in each suite's <properties>."""
    from junit_xml import to_xml_report_string

    properties = {
        "cascade.run_id": verdict.run_id,
        "cascade.attempt": str(verdict.attempt),
        "cascade.branch": verdict.branch,
        "cascade.validated_hash": verdict.validated_hash,
        "cascade.base_hash": verdict.base_hash,
        "cascade.verdict": verdict.outcome,
    }
    from cascade_ci.verdict import GateResult

    gates = verdict.gates or (GateResult(gate="verdict", error="no gate ran: a verdict without gates blocks"),)
    return to_xml_report_string([_suite(gate, properties) for gate in gates], encoding="utf-8")
