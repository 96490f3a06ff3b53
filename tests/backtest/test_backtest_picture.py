"""The README shows the backtest report's picture: a committed, small, standalone SVG written by
``python -m tools.backtest_picture`` of the policies in ``config/backtest/policies.yaml``."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from tasks.backtest import spec
from tasks.backtest.cli import DEFAULT_POLICIES

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"


def _pictures() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"!\[[^\]]*\]\((docs/backtest[^)\s]*\.svg)\)", readme)


def test_the_readme_shows_an_existing_small_backtest_picture():
    pictures = _pictures()
    assert pictures, "README.md has no ![...](docs/backtest....svg) picture"
    for name in pictures:
        path = ROOT / name
        assert path.is_file(), f"README.md shows {name}, which does not exist"
        assert path.stat().st_size < 200 * 1024, f"{name} is {path.stat().st_size} bytes"


def test_the_picture_is_a_standalone_svg_of_every_policy_of_the_backtest_file():
    """An ``<img>`` shows an SVG only with its namespace; one quality chart per policy."""
    root = ET.parse(ROOT / _pictures()[0]).getroot()
    assert root.tag == f"{SVG}svg", root.tag
    texts = {t.text for t in root.iter(f"{SVG}text")}
    charts = [s for s in root.iter(f"{SVG}svg") if s is not root]
    policies = [p.name for p in spec.load(DEFAULT_POLICIES).policies]
    assert len(charts) == len(policies)
    assert set(policies) <= texts, (policies, texts)
    assert any("retrain" in (t or "") for t in texts)
