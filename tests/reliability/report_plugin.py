"""A pytest plugin that prints the bad-input matrix as a table: case, expected, got, ok.

Used by ``scripts/reliability_report.py`` (``-p tests.reliability.report_plugin``); the test
records ``expected`` and ``got`` in each report's ``user_properties``.
"""

from __future__ import annotations

from typing import Any

_rows: list[dict[str, Any]] = []


def pytest_runtest_logreport(report: Any) -> None:
    """Keep one row per matrix case (its call phase, or the setup phase if that failed)."""
    if "test_bad_input[" not in report.nodeid:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        props = dict(report.user_properties)
        if hasattr(report, "wasxfail"):
            ok = "XFAIL" if report.skipped else "XPASS?"
        else:
            ok = "ok" if report.passed else "FAIL"
        _rows.append({"case": report.nodeid.split("[", 1)[1].rstrip("]"),
                      "expected": props.get("expected", ""),
                      "got": props.get("got", _first_line(report)), "ok": ok})


def _first_line(report: Any) -> str:
    text = str(getattr(report, "longrepr", "") or "")
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")]
    return lines[-1][2:].strip() if lines else "(no message recorded)"


def _cell(text: str, width: int) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the table and the total line."""
    if not _rows:
        return
    write = terminalreporter.write_line
    widths = {"case": max(len(r["case"]) for r in _rows), "expected": 42, "got": 70, "ok": 6}
    header = " | ".join(name.ljust(widths[name]) for name in widths)
    write("")
    write(header)
    write("-+-".join("-" * widths[name] for name in widths))
    for row in _rows:
        write(" | ".join(_cell(row[name], widths[name]).ljust(widths[name]) for name in widths))
    passed = sum(r["ok"] == "ok" for r in _rows)
    xfailed = sum(r["ok"] == "XFAIL" for r in _rows)
    extra = f", {xfailed} known bugs (xfail)" if xfailed else ""
    write(f"{len(_rows)} cases, {passed} passed{extra}")
