"""The bad-input matrix (issue 9): every case is one row; see ``cases_*.py`` for the rows.

Run the table: ``.venv/bin/python scripts/reliability_report.py``.
"""

from __future__ import annotations

import pytest

from engine.errors import TalkError
from tests.reliability import cases_files, cases_gui, cases_io, cases_text
from tests.reliability.matrix import Case, Got

CASES: list[Case] = [*cases_files.CASES, *cases_text.CASES, *cases_io.CASES, *cases_gui.CASES]


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, ctx, request):
    request.node.user_properties += [("area", case.area), ("given", case.given),
                                     ("expected", case.expected)]
    try:
        got = case.run(ctx)
    except TalkError as err:  # escaped the path's own handling: still say what it was
        got = Got(f"UNHANDLED {type(err).__name__}: {err}", err.code)
        request.node.user_properties.append(("got", got.shown()))
        raise
    except Exception as err:
        request.node.user_properties.append(("got", f"TRACEBACK {type(err).__name__}: {err}"))
        raise
    request.node.user_properties.append(("got", got.shown()))
    assert "Traceback" not in got.text
    assert case.expected in got.shown(), f"expected {case.expected!r}, got {got.shown()!r}"
