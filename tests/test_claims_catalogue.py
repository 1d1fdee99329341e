"""``CLAIMS.md`` at the repository root describes exactly the claims of `normtheory.claims`
(each id as a heading), and no project file points outside the repository to the founders'
notes."""

import re
import subprocess
from pathlib import Path

import pytest

from normtheory.claims import CLAIMS

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "CLAIMS.md"
# Built so this file does not contain the string it scans for.
FORBIDDEN = "shared" + "/"


def test_claims_md_has_exactly_the_ids_of_the_registry():
    text = CATALOGUE.read_text(encoding="utf-8")
    headings = re.findall(r"^#{2,4} +([A-Z][A-Z0-9-]*[A-Z0-9])\s*$", text, flags=re.M)
    assert len(headings) == len(set(headings)), f"a claim heading repeats: {sorted(headings)}"
    ids = set(headings)
    assert ids == set(CLAIMS), (
        f"in the registry but without a heading in CLAIMS.md: {sorted(set(CLAIMS) - ids)}; "
        f"headings in CLAIMS.md that are not registered claims: {sorted(ids - set(CLAIMS))}"
    )


def _project_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (so .git, .venv and build outputs are out);
    every file under the root minus those folders when git is not available."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        names = [n for n in out.decode().split("\0") if n]
        return [ROOT / n for n in names if (ROOT / n).is_file()]
    except (OSError, subprocess.SubprocessError):
        skip = {".git", ".venv", "runs", "build", "__pycache__", ".pytest_cache", ".ruff_cache"}
        return [
            p
            for p in ROOT.rglob("*")
            if p.is_file()
            and not skip.intersection(p.relative_to(ROOT).parts)
            and not p.relative_to(ROOT).parts[0].endswith(".egg-info")
        ]


def test_no_project_file_points_to_the_founders_notes():
    files = _project_files()
    if not files:
        pytest.skip("no project files found")
    hits = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (figures, Parquet) cannot hold a reference to read
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN in line:
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, (
        f"{len(hits)} line(s) mention {FORBIDDEN!r}; the project's own claims are in CLAIMS.md:\n"
        + "\n".join(hits)
    )
