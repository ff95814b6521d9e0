"""Run the bad-input matrix (tests/reliability) and print its table: case | expected | got | ok.

Usage: ``.venv/bin/python scripts/reliability_report.py [extra pytest args, e.g. -k remote]``.
Exits with pytest's status (0 when every case passed or failed only as a known, named bug).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    args = [str(ROOT / "tests" / "reliability"), "-q", "-p", "no:cacheprovider",
            "-p", "tests.reliability.report_plugin", "-k", "test_bad_input", *argv]
    return int(pytest.main(args))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
