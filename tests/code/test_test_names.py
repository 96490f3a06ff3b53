"""Test modules are imported by their file name (no ``__init__.py`` in most test folders), so
two with one name in different folders stop the whole suite at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_name_is_unique_outside_packages():
    names = [
        p.name
        for p in TESTS.rglob("test_*.py")
        if not (p.parent / "__init__.py").exists()  # a package's modules are named by the package
    ]
    twice = sorted(name for name, n in Counter(names).items() if n > 1)
    assert not twice, f"test modules with one name in two folders: {twice}"
