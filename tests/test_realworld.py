"""`check` on real KrakenD configs from public repositories (../shared/realworld/configs, read in place, never
copied or edited): no guard is ever dropped silently, and every refusal is a ConfigError that locates each problem."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lambdagate.config import LoadOptions, guards, load_config, namespaces, read_document
from lambdagate.errors import ConfigError, ConfigIssue
from tests.support.procs import ROOT

CORPUS = Path(ROOT).parent / "shared/realworld/configs"
SUFFIXES = (".json", ".yaml", ".yml")
# A syntax error has no JSON path: it is located by line and column instead.
SYNTAX_ERROR = re.compile(r"^invalid (JSON|YAML)( at line \d+, column \d+|: nested too deeply| value)")
# The extra_config keys a path goes through: `extra_config["auth/validator"]` or `extra_config.name`.
NAMESPACE_IN_PATH = re.compile(r'extra_config(?:\["([^"]+)"\]|\.(\w+))')

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the real-world corpus is not here: {CORPUS}")


@dataclass
class Outcome:
    path: Path
    warnings: list[ConfigIssue] | None = None  # accepted
    issues: list[ConfigIssue] | None = None  # refused

    @property
    def kind(self) -> str:
        if self.issues is None:
            return "accepted"
        if any("--allow-unsupported" in issue.message for issue in self.issues):
            return "refused-for-guards"
        return "refused-other"


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    results = []
    for path in corpus_files():
        try:
            results.append(Outcome(path, warnings=load_config(path, LoadOptions()).warnings))
        except ConfigError as exc:  # anything else fails the test with its traceback
            results.append(Outcome(path, issues=exc.issues))
    return results


def applies(ns: namespaces.Namespace | None, value: Any, scope: str) -> bool:
    if ns is None or not ns.reads(scope):
        return False
    if ns.name == "auth/validator" and scope == "service":
        # There KrakenD reads only the shared key cache's duration: validator fields protect nothing.
        return isinstance(value, dict) and all(k == "shared_cache_duration" or k.startswith("@") for k in value)
    return True


def unapplied_guards(path: Path) -> list[str]:
    """Guards in a config's service, endpoint or backend extra_config that lambdagate does not apply there,
    found by reading the document (not from the loader's messages)."""
    doc = read_document(path)
    if not isinstance(doc, dict):
        return []
    found = []

    def visit(owner: Any, scope: str) -> None:
        extra = owner.get("extra_config") if isinstance(owner, dict) else None
        for key in extra if isinstance(extra, dict) else ():
            ns = namespaces.lookup(key)
            if guards.is_guard(key) and not applies(ns, extra[key], scope):
                found.append(key)

    visit(doc, "service")
    for endpoint in doc.get("endpoints") or []:
        visit(endpoint, "endpoint")
        for backend in (endpoint.get("backend") or []) if isinstance(endpoint, dict) else []:
            visit(backend, "backend")
    return found


def test_corpus_outcomes(outcomes: list[Outcome]) -> None:
    counts = Counter((o.path.parent.relative_to(CORPUS).as_posix() or ".", o.kind) for o in outcomes)
    print("\nreal-world configs:", dict(sorted(counts.items())))
    assert len(outcomes) >= 100, "the corpus holds about 180 JSON and YAML files"
    assert counts[(".", "refused-for-guards")] > 0 and counts[(".", "accepted")] > 0


def test_no_accepted_config_drops_a_guard(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        if outcome.warnings is None:
            continue
        assert unapplied_guards(outcome.path) == [], outcome.path.name
        for warning in outcome.warnings:
            # A warning about a guard namespace as a whole, saying it is ignored (a warning about one of its fields,
            # or that an old name is read as the current one, drops nothing).
            named = [a or b for a, b in NAMESPACE_IN_PATH.findall(warning.path)]
            whole = bool(named) and re.search(r'extra_config(\["[^"]+"\]|\.\w+)$', warning.path) is not None
            assert not (whole and guards.is_guard(named[-1]) and "ignored" in warning.message), (
                f"{outcome.path.name}: {warning}"
            )


def test_every_refusal_locates_each_problem(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        for issue in outcome.issues or []:
            assert issue.path or SYNTAX_ERROR.match(issue.message), f"{outcome.path.name}: {issue}"
            assert "Traceback" not in issue.message


def test_configs_with_an_unapplied_guard_are_refused_for_it(outcomes: list[Outcome]) -> None:
    # Type errors are reported first (the namespaces are read once the types are right), so a config may be
    # refused for those alone; the others must name each guard.
    for outcome in outcomes:
        if outcome.kind == "refused-other" or outcome.issues is None:
            continue
        found = unapplied_guards(outcome.path)
        refused = [i for i in outcome.issues if "--allow-unsupported" in i.message]
        assert len(refused) == len(found), outcome.path.name


def sample(outcomes: list[Outcome]) -> list[Outcome]:
    """One config of each kind, plus one that is not JSON at all and one in the v1/v2 format."""
    picks: dict[str, Outcome] = {}
    for outcome in outcomes:
        issues = outcome.issues or []
        if outcome.path.parent.name == "v2":
            picks.setdefault("v2", outcome)
        elif issues and SYNTAX_ERROR.match(issues[0].message):
            picks.setdefault("syntax", outcome)
        else:
            picks.setdefault(outcome.kind, outcome)
    return list(picks.values())


def test_check_command_on_a_sample(outcomes: list[Outcome]) -> None:
    chosen = sample(outcomes)
    assert len(chosen) == 5
    for outcome in chosen:
        result = subprocess.run(
            [sys.executable, "-m", "lambdagate", "check", "-c", str(outcome.path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output
        if outcome.issues is None:
            assert result.returncode == 0 and f"{outcome.path}: OK" in result.stdout, output
            assert result.stdout.count("  warning: ") == len(outcome.warnings)
        else:
            assert result.returncode == 1 and result.stdout == "", output
            lines = result.stderr.splitlines()
            assert lines[0] == f"{outcome.path}: {len(outcome.issues)} error(s)"
            assert lines[1:] == [f"  error: {issue}" for issue in outcome.issues]
