"""A fresh clone has every document the README points to: nothing outside the repository."""

from __future__ import annotations

import re

from tests.support import ROOT


def test_the_readme_links_only_files_in_the_repository_and_the_design_is_one_of_them():
    readme = (ROOT / "README.md").read_text()
    linked = re.findall(r"\]\(([^)#]+)\)", readme)
    named = re.findall(r"`((?:\.\./|docs/)[^`\s]+\.md)`", readme)
    assert "docs/DESIGN.md" in linked
    for path in {*linked, *named}:
        if path.startswith(("http://", "https://")):
            continue
        target = (ROOT / path).resolve()
        assert target.is_relative_to(ROOT) and target.is_file(), path
