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


# A refusal a new user met in a real config, as `check` words it now: (file, issue path, start of the message).
MESSAGES = [
    (
        "Arif9878__traefik-grpc__krakend__krakend.json",
        'endpoints[2].extra_config["github.com/devopsfaith/krakend-jose/validator"].propagate_claims',
        'Input should be a valid list, got bool True: write a list, such as [["sub", "X-User"]]',
    ),
    (
        "initialstacker__laravel-ddd__docker__krakend__krakend.json",
        'endpoints[0].backend[0].extra_config["backend/http/client"].client_tls.ca_certs[0]',
        "the file '/etc/ssl/ca.crt' does not exist: write the path of a PEM file of CA certificates the gateway can",
    ),
    (
        "zascontab__krankend__config__krakend-new.json",
        'extra_config["security/jwt"]',
        "`security/jwt` is not a KrakenD namespace (KrakenD ignores it, so this guard never ran there): did you mean "
        "`auth/validator` (read in each endpoint's extra_config)?",
    ),
    (
        "Vido__krakend-kafka-poc__config__krakend__krakend.json",
        'endpoints[0].backend[0].extra_config["backend/pubsub/publisher"]',
        "backend/pubsub is not supported by lambdagate: `backend/pubsub/publisher` makes this backend a Pub/Sub "
        "publisher, not an HTTP backend;",
    ),
]


@pytest.mark.parametrize(("name", "path", "message"), MESSAGES, ids=[m[0].split("__")[0] for m in MESSAGES])
def test_real_refusals_name_the_key_and_what_to_write(outcomes: list[Outcome], name: str, path: str, message: str):
    [outcome] = [o for o in outcomes if o.path.name == name]
    assert any(i.path == path and i.message.startswith(message) for i in outcome.issues or []), [
        str(i) for i in outcome.issues or []
    ]
    if "pubsub" in path:  # refused for what the backend is, not for its host
        assert not any(".host[" in i.path for i in outcome.issues)


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


# --- which refusals KrakenD CE shares ------------------------------------------------------------------------
# Each refused config is classified by its issues, first matching rule wins (a config KrakenD refuses for one
# issue is refused there whatever its other issues). Rules: (issue path regex, issue message regex, reason).
# "KrakenD refuses too": KrakenD CE 2.x does not start with it (lura's config.Init, viper's parser, gin's router).
KRAKEND_REFUSES: list[tuple[str, str, str]] = [
    ("^$", r"^invalid (JSON|YAML)", "not valid JSON/YAML (often a flexible-config template): viper cannot parse it"),
    ("^version$", r"unsupported version|^format version [12] ", 'format version 2: lura wants "version": 3'),
    ("url_pattern$", r"placeholder \{(?!resp\d+_)[^}]+\} is not in endpoint", "lura: undefined output param"),
    ("output_encoding$", r'"no-op" passes one backend through', "lura: no-op encoding with several backends"),
    ("^endpoints\\[\\d+\\]$", r"^duplicate of endpoints", "gin panics on a duplicate route"),
    ("^tls$", r'^needs "public_key"', "lura's server stops at start: public key not defined"),
    (
        r"^tls\.(keys\[\d+\]\.)?(public_key|private_key)$",
        r"^the file .* (does not exist|cannot be read)",
        "lura's server stops at start: the key file cannot be read",
    ),
]
# "KrakenD starts, fails closed": it starts but the endpoint answers 401 to every request (krakend-jose's
# erroredHandler when the validator or signer cannot be built); lambdagate refuses to start instead.
KRAKEND_FAILS_CLOSED: list[tuple[str, str, str]] = [
    (
        r"\.jwk_local_path$",
        r"^the file .* (does not exist|cannot be read)",
        "missing jwk_local_path file: KrakenD answers 401 there",
    ),
    (r"auth/validator\"\]$", r'give exactly one of "jwk_url"', "validator without a key source: 401 there"),
    (r"\.jwk_url$", r"is not an http\(s\) URL", "JWK URL that is a template variable: 401 there"),
    (r"\.secret_url$", r"encrypted key files", "encrypted key file (KrakenD CE reads it)"),
]
# The configs only lambdagate refuses today (file → one-line reason), kept exact so that a change shows: remove
# a line when the config starts, add one (with its reason) when lambdagate starts refusing a config.
LAMBDAGATE_ONLY: dict[str, str] = {
    "AbolfazlRahmani1997__smsgateway__krakend__krakend.json": "`qos/ratelimit/proxy` is read only in a backend's extra_config",
    "AngelMariages__feature-flag-krakend__krakend.json": "Input should be 'json', 'safejson', 'string' or 'no-op', got 'fast-json'",
    "Arif9878__traefik-grpc__krakend__krakend.json": 'propagate_claims: Input should be a valid list, got bool True: write a list, such as [["sub", "X-User"]]',
    "BernardN38__socialSphere-backend__api-gateway__config__krakend.json": "'http://*' can match any site, which allow_credentials would let read replies with its use",
    "DeveloperDurp__krakend__krakend.json": "`plugin/http-server` protects every endpoint and lambdagate does not implement it",
    "HADLakmal__krakenD-plugin__krakend.json": "`plugin/req-resp-modifier` protects this endpoint and lambdagate does not implement it",
    "Klasmart-Engineering__api-gateway-wildcard__krakend.json": "`plugin/http-server` protects every endpoint and lambdagate does not implement it",
    "Maximax67__helizium-api-gateway__config__krakend__krakend.json": "`plugin/http-server` protects every endpoint and lambdagate does not implement it",
    "MidhunRajeevan__api-manager__krakend__krakend.json": "`auth/api-keys` protects every endpoint and lambdagate does not implement it",
    "PattpBoy__krakend-playground__krakend__config__krakend.json": "`auth/revoker` protects every endpoint and lambdagate does not implement it",
    "Rahmatulah12__krakend-gw__config__krakend.json": "`plugin/http-server` protects every endpoint and lambdagate does not implement it",
    "ThabisoM7__TholaGateway__krakend.json": "`security/secure-headers` is not a KrakenD namespace (KrakenD ignores it, so this guard never ran there)",
    "Velmuruganmp1210__krakend_lua__krakend.json": "modifier/lua-*: cannot read its sources; a gcppubsub:// backend",
    "Vido__krakend-kafka-poc__config__krakend__krakend.json": "backend/pubsub is not supported by lambdagate",
    "agentic-layer__agent-gateway-krakend__local__krakend.json": "`plugin/http-server` protects every endpoint and lambdagate does not implement it",
    "arwoosa__api-gateway__argocd__overlays__staging__cfg__krakend.json": "`plugin/http-server` protects every endpoint and lambdagate does not implement it",
    "birddevelper__kerakend__config__krakend__krakend.json": "`auth/revoker` protects every endpoint and lambdagate does not implement it",
    "blackexchange__krakend_multi__krakend.json": "'http*' can match any site, which allow_credentials would let read replies with its users'",
    "boerenboodschap__gateway__config__krakend.json": "`auth/revoker` protects every endpoint and lambdagate does not implement it",
    "caxqueiroz__krakend-bedrock-monitoring-tokens__examples__krakend.json": "`plugin/http-server` protects every endpoint and lambdagate does not implement it",
    "commercexio__commercex-krakend__config__krakend.json": "at the service level KrakenD reads only shared_cache_duration, so alg, audience, issuer, r",
    "daybreak124__xml-krakend__krakend.json": "Input should be 'json', 'safejson', 'string' or 'no-op', got 'xml'",
    "elbassel__krakend-play-ground__config__krakend.json": "`github.com/devopsfaith/krakend-ratelimit/juju/proxy` is read only in a backen",
    "faozimipa__micro__api_gateway__krakend.json": "`auth/validator` is read only in an endpoint's extra_config",
    "fraserc182__krakend-plugin__config__krakend__krakend.json": "Input should be 'json', 'json-collection', 'string' or 'no-op', got 'negotiate'",
    "gbbgabriel__url-shortener-platform__gateway__krakend.json": "`security/rate-limit` is not a KrakenD namespace (KrakenD ignores it, so this guard never ran there)",
    "gojo-op__ecommerce-go-react-kafka-krakend__krakend__krakend.json": "`github_com/devopsfaith/krakend/transport/http/server/handler` (the old name of `p",
    "herbertscruz__Krakend-experiments__krakend.json": "`plugin/http-server` protects every endpoint and lambdagate does not implement it",
    "ilramdhan__xyn-pos-v1__infra__krakend__krakend.json": "at the service level KrakenD reads only shared_cache_duration, so alg, cache, cache_durati",
    "infratographer__krakend-auth-request__gw-config.json": "`plugin/http-server` protects every endpoint and lambdagate does not implement it",
    "merlinthedev848__msip__gateway__krakend.json": "`qos/ratelimit/router` is read only in an endpoint's extra_config",
    "qbem-repos__krakend-poc__krakend-keycloak-poc__krakend.json": "`auth/authorization` is not a KrakenD namespace (KrakenD ignores it, so this guard never ran there)",
    "zascontab__krankend__config__krakend-new.json": "`security/jwt` is not a KrakenD namespace (KrakenD ignores it, so this guard never ran there)",
    "zascontab__krankend__config__krakend-simple-fix.json": "`modifier/lua` is not a KrakenD namespace (KrakenD ignores it, so this guard never ran there)",
}


def _match(issue: ConfigIssue, rules: list[tuple[str, str, str]]) -> str | None:
    return next(
        (why for path, msg, why in rules if re.search(path, issue.path) and re.search(msg, issue.message)), None
    )


def classify(issues: list[ConfigIssue]) -> tuple[str, str]:
    """("krakend-refuses" | "krakend-fails-closed" | "lambdagate-only", one-line reason)."""
    for kind, rules in (("krakend-refuses", KRAKEND_REFUSES), ("krakend-fails-closed", KRAKEND_FAILS_CLOSED)):
        reason = next((why for issue in issues if (why := _match(issue, rules))), None)
        if reason is not None and (kind == "krakend-refuses" or all(_match(i, rules) for i in issues)):
            return kind, reason
    first = next((i for i in issues if not _match(i, KRAKEND_FAILS_CLOSED)), issues[0])
    return "lambdagate-only", f"{first.path}: {first.message}"[:160]


def test_refusals_are_classified_against_krakend(outcomes: list[Outcome]) -> None:
    table = {o.path.relative_to(CORPUS).as_posix(): classify(o.issues) for o in outcomes if o.issues is not None}
    print("\nrefused real-world configs:")
    for name, (kind, reason) in sorted(table.items(), key=lambda item: (item[1][0], item[0])):
        print(f"  {kind:22} {name}: {reason}")
    assert all(reason for _, reason in table.values())
    assert any(kind == "krakend-refuses" for kind, _ in table.values())
    only = {name for name, (kind, _) in table.items() if kind == "lambdagate-only"}
    assert only == set(LAMBDAGATE_ONLY), {
        "newly refused by lambdagate only": sorted(only - set(LAMBDAGATE_ONLY)),
        "now accepted, or refused by KrakenD too": sorted(set(LAMBDAGATE_ONLY) - only),
    }
