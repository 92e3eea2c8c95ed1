"""Templated configs (KrakenD's flexible configuration): FC_* switches and --fc-* flags, settings, partials and
templates, the safety rules, errors with positions, `check --out -`, and `run --watch` seeing a settings change."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from lambdagate.config import LoadOptions, load_config
from lambdagate.config.flexible import FlexibleConfig
from lambdagate.errors import ConfigError
from tests.support.procs import ROOT, Process, free_port, python_module, wait_http
from tests.test_lambda_backend import http

MAIN = """{
  "version": 3,
  "port": {{ .service.port }},
  "timeout": "{{ .service.timeout }}",
  "endpoints": [
    {{- range $i, $e := .service.endpoints }}
    {{- if $i }},{{ end }}
    {{ template "endpoint.tmpl" (dict "e" $e "hosts" $.service.hosts) }}
    {{- end }}
  ]
}
"""
ENDPOINT = """{
  "endpoint": "{{ .e.path }}",
  "backend": [{"url_pattern": "{{ .e.target }}", "host": {{ marshal .hosts }}}],
  "extra_config": { {{ include "rate_limit.json" }} }
}"""


def write_project(root: Path, hosts: list[str], endpoints: list[dict], main: str = MAIN) -> FlexibleConfig:
    for folder in ("settings", "partials", "templates"):
        (root / folder).mkdir(exist_ok=True)
    service = {"port": 8080, "timeout": "3s", "hosts": hosts, "endpoints": endpoints}
    (root / "settings/service.json").write_bytes(orjson.dumps(service))
    (root / "partials/rate_limit.json").write_text('"qos/ratelimit/router": {"max_rate": 100}')
    (root / "templates/endpoint.tmpl").write_text(ENDPOINT)
    (root / "krakend.tmpl").write_text(main)
    return FlexibleConfig(str(root / "settings"), str(root / "partials"), str(root / "templates"))


def load(root: Path, fc: FlexibleConfig):
    return load_config(root / "krakend.tmpl", LoadOptions(flexible=fc))


def refusal(root: Path, fc: FlexibleConfig) -> str:
    with pytest.raises(ConfigError) as caught:
        load(root, fc)
    return "\n".join(str(issue) for issue in caught.value.issues)


def test_settings_partials_and_templates_render_into_the_config(tmp_path):
    endpoints = [{"path": "/a", "target": "/x"}, {"path": "/b/{id}", "target": "/y/{id}"}]
    fc = write_project(tmp_path, ["http://svc:8080"], endpoints)
    service = load(tmp_path, fc).service
    assert service.port == 8080 and service.timeout == 3.0
    assert [e.endpoint for e in service.endpoints] == ["/a", "/b/{id}"]
    assert service.endpoints[1].backend[0].url_pattern == "/y/{id}"
    assert service.endpoints[1].backend[0].host == ["http://svc:8080"]
    assert "qos/ratelimit/router" in service.endpoints[0].namespaces


def test_without_the_switch_a_template_is_refused_with_a_hint(tmp_path):
    write_project(tmp_path, ["http://svc"], [{"path": "/a", "target": "/x"}])
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "krakend.tmpl")
    assert "it looks like a KrakenD template: render it with FC_ENABLE=1 or --fc-enable" in str(caught.value)


def test_fc_out_writes_the_rendered_config(tmp_path):
    fc = write_project(tmp_path, ["http://svc"], [{"path": "/a", "target": "/x"}])
    out = tmp_path / "rendered.json"
    load(tmp_path, FlexibleConfig(fc.settings, fc.partials, fc.templates, out=str(out)))
    assert orjson.loads(out.read_bytes())["endpoints"][0]["endpoint"] == "/a"


@pytest.mark.parametrize("name", ["../secret.txt", "/etc/passwd", "sub/../../secret.txt"])
def test_include_never_reads_outside_the_partials_folder(tmp_path, name):
    (tmp_path / "secret.txt").write_text("secret")
    fc = write_project(tmp_path, ["http://svc"], [{"path": "/a", "target": "/x"}])
    (tmp_path / "templates/endpoint.tmpl").write_text(ENDPOINT.replace("rate_limit.json", name))
    message = refusal(tmp_path, fc)
    assert "is outside the FC_PARTIALS folder" in message and "secret" not in message.replace("secret.txt", "")


def test_a_missing_partial_is_an_error_naming_it_and_where(tmp_path):
    fc = write_project(tmp_path, ["http://svc"], [{"path": "/a", "target": "/x"}])
    (tmp_path / "partials/rate_limit.json").unlink()
    message = refusal(tmp_path, fc)
    assert 'template: endpoint.tmpl:4:24: executing "endpoint.tmpl" at <include "rate_limit.json">' in message
    assert "rate_limit.json: cannot read partial: No such file or directory" in message


def test_env_reads_only_allowed_names(tmp_path, monkeypatch):
    main = '{"version": 3, "name": "{{ env "APP_NAME" }}", "endpoints": []}'
    fc = write_project(tmp_path, [], [], main=main)
    monkeypatch.setenv("APP_NAME", "shop")
    assert load(tmp_path, fc).service.name == "shop"
    allowed = FlexibleConfig(fc.settings, fc.partials, fc.templates, env_allow="APP_.*")
    assert load(tmp_path, allowed).service.name == "shop"
    strict = FlexibleConfig(fc.settings, fc.partials, fc.templates, env_allow="KRAKEND_.*")
    assert "env 'APP_NAME' is not allowed by FC_ENV_ALLOW (KRAKEND_.*)" in refusal(tmp_path, strict)


def test_template_errors_name_the_file_line_and_action(tmp_path):
    fc = write_project(tmp_path, [], [], main='{\n  "version": 3,\n  "port": {{ .service.nope.port }}\n}')
    message = refusal(tmp_path, fc)
    assert 'template: krakend.tmpl:3:14: executing "krakend.tmpl" at <.service.nope.port>' in message
    assert "nil pointer evaluating interface {}.port" in message


def test_invalid_rendered_json_shows_the_rendered_line(tmp_path):
    fc = write_project(tmp_path, [], [], main='{\n  "version": 3,\n  "port": {{ .service.timeout }}\n}')
    message = refusal(tmp_path, fc)
    assert "the rendered config is not valid JSON at line 3" in message
    assert 'that line reads: "port": 3s' in message


def test_invalid_settings_name_the_file(tmp_path):
    fc = write_project(tmp_path, [], [])
    (tmp_path / "settings/broken.json").write_text('{"a": 1,}')
    assert "broken.json: invalid JSON at line 1, column 9" in refusal(tmp_path, fc)
    (tmp_path / "settings/broken.json").write_text("[1, 2]")
    assert "broken.json: a settings file must hold a JSON object" in refusal(tmp_path, fc)


def test_check_prints_the_rendered_config_with_env_switches(tmp_path):
    write_project(tmp_path, ["http://svc"], [{"path": "/a", "target": "/x"}])
    env = {
        "FC_ENABLE": "1",
        "FC_SETTINGS": str(tmp_path / "settings"),
        "FC_PARTIALS": str(tmp_path / "partials"),
        "FC_TEMPLATES": str(tmp_path / "templates"),
    }
    command = python_module("lambdagate", "check", "-c", str(tmp_path / "krakend.tmpl"), "--out", "-")
    done = subprocess.run(command, capture_output=True, text=True, env=_env(env), cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered, _, summary = done.stdout.partition("}\n" + str(tmp_path))
    assert orjson.loads(rendered + "}")["endpoints"][0]["endpoint"] == "/a"
    assert "OK — 1 endpoint(s)" in summary


def test_flags_enable_rendering_without_env(tmp_path):
    write_project(tmp_path, ["http://svc"], [{"path": "/a", "target": "/x"}])
    flags = [
        "--fc-settings",
        str(tmp_path / "settings"),
        "--fc-partials",
        str(tmp_path / "partials"),
        "--fc-templates",
        str(tmp_path / "templates"),
    ]
    command = python_module("lambdagate", "check", "-c", str(tmp_path / "krakend.tmpl"), *flags)
    done = subprocess.run(command, capture_output=True, text=True, env=_env({}), cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "GET     /a" in done.stdout


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("FC_")}
    return {**base, **extra}


def _poll_until_served(url: str, settings: Path, content: bytes, timeout: float = 40.0) -> list:
    """Write the settings (again every 3 s: the watcher thread may not watch yet right after start-up) until `url`
    answers 200; what each attempt saw, for the failure message."""
    deadline, written, seen = time.monotonic() + timeout, 0.0, []
    while time.monotonic() < deadline:
        if time.monotonic() - written > 3:
            settings.write_bytes(content)
            written = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=3) as reply:
                seen.append(reply.status)
                return seen
        except urllib.error.HTTPError as error:
            seen.append(error.code)
        except OSError as error:  # a worker being replaced: try again
            seen.append(type(error).__name__)
        time.sleep(0.2)
    return seen


def test_run_watch_reloads_when_a_settings_file_changes(tmp_path, upstream):
    write_project(tmp_path, [upstream], [{"path": "/first", "target": "/json/one"}])
    port = free_port()
    flags = [
        "--fc-settings",
        str(tmp_path / "settings"),
        "--fc-partials",
        str(tmp_path / "partials"),
        "--fc-templates",
        str(tmp_path / "templates"),
    ]
    proc = Process(
        python_module(
            "lambdagate",
            "run",
            "-c",
            str(tmp_path / "krakend.tmpl"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--watch",
            *flags,
        ),
        tmp_path / "gateway.log",
        _env({}),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/__health", proc=proc.proc, timeout=30)
        assert http("GET", f"{url}/first")[0] == 200
        assert http("GET", f"{url}/second")[0] == 404
        service = orjson.loads((tmp_path / "settings/service.json").read_bytes())
        service["endpoints"].append({"path": "/second", "target": "/json/two"})
        seen = _poll_until_served(f"{url}/second", tmp_path / "settings/service.json", orjson.dumps(service))
        # granian keeps the old worker accepting for a moment after the new one started: wait until it is gone.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "Stopped old worker" not in proc.log():
            time.sleep(0.2)
        status, _, body = http("GET", f"{url}/second")
        assert status == 200 and orjson.loads(body)["name"] == "two", (seen, proc.log())
        assert "reload (file changed): config is valid" in proc.log()
    finally:
        proc.stop()


def test_a_deeply_nested_settings_file_is_refused_cleanly(tmp_path):
    fc = write_project(tmp_path, [], [])
    (tmp_path / "settings/deep.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "deep.json: invalid JSON: nested too deeply" in refusal(tmp_path, fc)


def test_a_reload_that_fails_badly_is_refused_and_the_watch_goes_on(tmp_path, upstream):
    """Any failure while reloading (here a settings file nested too deeply) refuses that reload: the old config
    keeps serving, the watcher keeps watching, and the gateway still stops on SIGTERM."""
    write_project(tmp_path, [upstream], [{"path": "/first", "target": "/json/one"}])
    port = free_port()
    flags = [f"--fc-{name}={tmp_path / name}" for name in ("settings", "partials", "templates")]
    command = ["run", "-c", str(tmp_path / "krakend.tmpl"), "--port", str(port), "--host", "127.0.0.1", "--watch"]
    proc = Process(python_module("lambdagate", *command, *flags), tmp_path / "gateway.log", _env({}))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/__health", proc=proc.proc, timeout=30)
        deep = tmp_path / "settings/deep.json"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "reload (file changed) refused" not in proc.log():
            deep.write_text("[" * 100_000 + "]" * 100_000)  # again until the watcher is up
            time.sleep(1)
        assert "nested too deeply" in proc.log() and http("GET", f"{url}/first")[0] == 200
        deep.unlink()
        service = orjson.loads((tmp_path / "settings/service.json").read_bytes())
        service["endpoints"].append({"path": "/second", "target": "/json/two"})
        seen = _poll_until_served(f"{url}/second", tmp_path / "settings/service.json", orjson.dumps(service))
        assert seen[-1] == 200, (seen, proc.log())
        deadline = time.monotonic() + 15  # a stop while granian replaces a worker is another test's matter
        while time.monotonic() < deadline and proc.log().count("Stopped old worker") < proc.log().count(
            "respawning workers"
        ):
            time.sleep(0.2)
        code = proc.stop()
        assert code == 0 and "Traceback" not in proc.log(), (code, proc.log().splitlines())
    finally:
        proc.stop()
