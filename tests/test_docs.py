"""The README's links work in a clone: every relative link of README.md and docs/*.md names a file
inside the repository, and none points outside it."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_links_stay_inside_the_repository_and_resolve():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        assert "../shared" not in text, doc
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path = (doc.parent / target).resolve()
            assert ROOT in path.parents or path == ROOT, (doc.name, target)
            assert path.exists(), (doc.name, target)
    assert (ROOT / "docs" / "api.md").is_file() and (ROOT / "docs" / "processes.md").is_file()
