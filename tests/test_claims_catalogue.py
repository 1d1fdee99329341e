"""`normtheory.claims` mirrors ``shared/CLAIMS.md``: the same ids, nothing missing or extra."""

import re
from pathlib import Path

import pytest

from normtheory.claims import CLAIMS

CATALOGUE = Path(__file__).resolve().parents[1] / ".." / "shared" / "CLAIMS.md"


def test_claims_py_has_exactly_the_ids_of_claims_md():
    if not CATALOGUE.exists():
        pytest.skip(f"{CATALOGUE} not found (shared/ sits next to the repository)")
    ids = set(re.findall(r"^- \*\*([A-Z][A-Z0-9-]+)\*\*", CATALOGUE.read_text(), flags=re.M))
    assert len(ids) >= 20
    assert set(CLAIMS) == ids, (
        f"missing from claims.py: {sorted(ids - set(CLAIMS))}; "
        f"not in CLAIMS.md: {sorted(set(CLAIMS) - ids)}"
    )
