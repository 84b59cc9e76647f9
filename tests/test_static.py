"""The static files parse: a stylesheet whose braces do not balance silently drops every rule after
the break (a merge once left an @media block open, and the inbox's filters lost their styles)."""
from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "webui" / "static"


def test_every_stylesheet_balances_its_braces_and_comments():
    for css in STATIC.glob("*.css"):
        text = re.sub(r"/\*.*?\*/", "", css.read_text(encoding="utf-8"), flags=re.S)
        assert "/*" not in text and "*/" not in text, css.name
        depth = 0
        for number, line in enumerate(text.split("\n"), 1):
            depth += line.count("{") - line.count("}")
            assert depth >= 0, f"{css.name}:{number}: a '}}' closes nothing"
        assert depth == 0, f"{css.name}: {depth} block(s) left open"
