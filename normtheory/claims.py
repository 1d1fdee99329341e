"""The claims registry: every claim normtheory tests and its pre-registered test.

The data lives in ``claims.toml`` next to this module (``CLAIMS.md`` at the repository root is the
human text). Per claim it fixes *before* any result is judged: the statistics a study must
report (by name), each one's direction and smallest effect size of interest (SESOI), which are
primary, the rule that combines the primary rows into one claim-level verdict, the manipulation
checks that decide whether the claim is testable at the scale run, and the minimum number of
independent seeds. Studies compute the named statistics; `normtheory.verdicts` applies the test.

A test is identified by `Claim.digest`, a hash of its content; `registered_at` finds the commit at
which it last changed, so a run made under an older test is flagged in the report.
"""

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REGISTRY = Path(__file__).with_name("claims.toml")
DIRECTIONS = ("greater", "less", "two-sided", "equivalent", "exact")
OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
       "<": lambda a, b: a < b}  # fmt: skip
RULES = ("all", "any")
KINDS = ("exact", "empirical")


@dataclass(frozen=True)
class Statistic:
    """A registered statistic of a claim.

    Attributes:
        name: what the study reports it as (unique within the claim).
        text: what it is, in words.
        direction: ``greater`` / ``less`` (the claim predicts statistic > null / < null),
            ``two-sided`` (an effect either way), ``equivalent`` (statistic = null within
            ± sesoi) or ``exact`` (an identity: |value| ≤ sesoi, the tolerance).
        sesoi: smallest effect size of interest, in the statistic's units.
        null: the value under "no effect" (a non-inferiority margin moves it off 0).
        primary: whether the row enters the claim-level rule (others are shown, not counted).
        per: a condition the study reports one row for each value of (e.g. ``batch_size``).
    """

    name: str
    text: str
    direction: str
    sesoi: float
    null: float = 0.0
    primary: bool = True
    per: str = ""

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"statistic {self.name!r}: unknown direction {self.direction!r}; "
                f"valid: {', '.join(DIRECTIONS)}"
            )
        if self.sesoi < 0:
            raise ValueError(f"statistic {self.name!r}: sesoi must be ≥ 0, got {self.sesoi}")


@dataclass(frozen=True)
class Check:
    """A manipulation check: the study reports `value`; the check passes when
    ``value <op> threshold``. A failed check makes the claim "not testable at this scale".

    `scale_needed` says what scale would pass this check, when the claim's own `scale_needed`
    is about another one. It explains a verdict and is not part of the test: the claim's digest
    leaves it out."""

    name: str
    text: str
    op: str
    threshold: float
    scale_needed: str = ""

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(
                f"check {self.name!r}: unknown op {self.op!r}; valid: {', '.join(OPS)}"
            )

    def passes(self, value: float) -> bool:
        return value == value and OPS[self.op](value, self.threshold)  # NaN fails


@dataclass(frozen=True)
class Test:
    """A claim's pre-registered test (see the module docstring)."""

    statistics: tuple[Statistic, ...]
    checks: tuple[Check, ...] = ()
    rule: str = "all"
    min_seeds: int = 5
    alpha: float = 0.05

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; valid: {', '.join(RULES)}")
        names = [s.name for s in self.statistics]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate statistic names in {names}")

    def statistic(self, name: str) -> Statistic:
        for s in self.statistics:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def primary(self) -> tuple[Statistic, ...]:
        return tuple(s for s in self.statistics if s.primary)


@dataclass(frozen=True)
class Claim:
    """One claim: stable id, its source and setting, one line of what it says, its test."""

    id: str
    source: str
    statement: str
    kind: str
    setting: str = ""
    paper: str = ""
    paper_effect: float | None = None
    study: str = ""
    scale_needed: str = ""
    test: Test = field(default_factory=lambda: Test(()))

    @property
    def digest(self) -> str:
        """12 hex digits of the SHA-256 of the claim's registry entry (its test and wording)."""
        return _digest(self)


def _digest(claim: Claim) -> str:
    entry = asdict(claim)
    for check in entry["test"]["checks"]:
        del check["scale_needed"]  # explains a failed check; not part of the test
    text = json.dumps(entry, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_registry(text: str) -> dict[str, Claim]:
    """Claims from the TOML text of a registry (see ``claims.toml`` for the fields)."""
    data = tomllib.loads(text)
    out = {}
    for cid, entry in data.items():
        entry = dict(entry)
        stats = tuple(Statistic(**s) for s in entry.pop("statistics", ()))
        checks = tuple(Check(**c) for c in entry.pop("checks", ()))
        test_kw = {k: entry.pop(k) for k in ("rule", "min_seeds", "alpha") if k in entry}
        claim = Claim(id=cid, test=Test(stats, checks, **test_kw), **entry)
        if claim.kind not in KINDS:
            raise ValueError(f"claim {cid}: unknown kind {claim.kind!r}; valid: {', '.join(KINDS)}")
        out[cid] = claim
    return out


CLAIMS: dict[str, Claim] = parse_registry(REGISTRY.read_text(encoding="utf-8"))


def get_claim(claim_id: str) -> Claim:
    """The claim with id `claim_id`; unknown ids raise, listing the known ones."""
    try:
        return CLAIMS[claim_id]
    except KeyError:
        raise ValueError(f"unknown claim {claim_id!r}; known claims: {', '.join(CLAIMS)}") from None


def digests(claim_ids=None) -> dict[str, str]:
    """claim id -> `Claim.digest` (all claims, or those named)."""
    ids = CLAIMS if claim_ids is None else claim_ids
    return {c: CLAIMS[c].digest for c in ids if c in CLAIMS}


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REGISTRY.parent, capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@cache
def registered_at() -> dict[str, str]:
    """claim id -> the short commit at which its registry entry last changed: the newest commit
    touching ``claims.toml`` whose version of the entry has the current digest while its parent's
    differs. ``"uncommitted"`` when the working copy differs from every commit; ``""`` outside
    a git checkout."""
    rel = REGISTRY.name
    commits = _git("log", "--format=%h", "--", rel).split()
    if not commits:
        return {}
    current = digests()
    out: dict[str, str] = {}
    newer = None  # (commit, digests) of the newer commit in the walk
    for commit in commits:
        try:
            old = {
                c: v.digest for c, v in parse_registry(_git("show", f"{commit}:./{rel}")).items()
            }
        except Exception:  # an unreadable old version ends the walk
            old = {}
        for cid, digest in current.items():
            if cid in out:
                continue
            if newer is None and old.get(cid) != digest:
                out[cid] = "uncommitted"
            elif newer is not None and old.get(cid) != digest:
                out[cid] = newer[0]
        newer = (commit, old)
        if len(out) == len(current):
            break
    for cid in current:
        out.setdefault(cid, commits[-1])  # unchanged since the registry's first commit
    return out
