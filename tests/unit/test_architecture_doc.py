"""docs/architecture.md's module table is the map of the package: every module of sqlq/ has its
row, and every row names files that exist, so the map cannot drift from the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sqlq"
DOC = ROOT / "docs" / "architecture.md"

#: files that are a package's plumbing, not a module with an idea of its own
NOT_MODULES = {"__init__.py", "__main__.py", "py.typed"}


def _table_paths() -> list[str]:
    """The paths the first column of the module table names, relative to sqlq/ (a bare name after
    ``dir/name`` in the same cell is in that directory: ``store/base.py``, ``jobs.py``)."""
    text = DOC.read_text()
    table = text[text.index("## Modules"):text.index("## Decisions")]
    paths: list[str] = []
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        folder = ""
        for name in re.findall(r"`([^`]+)`", cell):
            if "/" in name:
                folder = name.rsplit("/", 1)[0] + "/" if not name.endswith("/") else name
                paths.append(name)
            else:
                paths.append(folder + name)
    return paths


def _listed() -> set[Path]:
    found: set[Path] = set()
    for path in _table_paths():
        if path.startswith("migrations/"):
            continue  # alembic's revisions live beside the package (shipped inside it as sqlq.migrations)
        matches = list(PACKAGE.glob(path.rstrip("/")))
        assert matches, f"docs/architecture.md's module table names {path!r}, which is not in sqlq/"
        for match in matches:
            found.update(match.rglob("*") if match.is_dir() else [match])
    return found


def test_every_module_of_the_package_has_a_row():
    listed = _listed()
    missing = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*")
                     if p.is_file() and p.suffix in {".py", ".sql"} and p.name not in NOT_MODULES
                     and "__pycache__" not in p.parts and p not in listed)
    assert not missing, f"modules without a row in docs/architecture.md's module table: {missing}"


def test_every_row_names_files_that_exist():
    assert len(_listed()) > 20  # (and _listed asserts each name exists)
