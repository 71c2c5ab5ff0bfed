"""The test tree's own rule: pytest's default import mode puts tests/ and integration/ on
sys.path by basename, so one module name in both breaks collection of the whole run (CI met it
three times). Each test module's basename is unique across the two tiers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_test_module_basename_is_in_both_tiers():
    names = Counter(p.name for tier in ("tests", "integration")
                    for p in (ROOT / tier).glob("*.py") if p.name != "conftest.py")
    assert [n for n, count in names.items() if count > 1] == []
