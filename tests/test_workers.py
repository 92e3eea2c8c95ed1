"""Worker supervision (workers.py): a worker that dies for any reason is respawned and the gateway keeps
answering; a worker that cannot start stops the gateway only when nothing else answers. Real processes."""

from __future__ import annotations

import http.client
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from lambdagate.workers import MAX_BACKOFF, START_ATTEMPTS, RespawnPolicy
from tests.support.procs import Process, free_port, python_module, wait_http

# --- the rule, without processes -----------------------------------------------------------------------------


def test_policy_respawns_started_workers_always_with_backoff_when_they_die_young() -> None:
    policy = RespawnPolicy()
    assert policy.delay(0, started=True, age=60.0, others_alive=False) == 0.0
    delays = [policy.delay(0, started=True, age=1.0, others_alive=False) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, MAX_BACKOFF, MAX_BACKOFF]  # never None: never gives up
    assert policy.delay(0, started=True, age=30.0, others_alive=False) == 0.0  # a long life resets the back-off
    assert policy.delay(0, started=True, age=1.0, others_alive=False) == 0.5


def test_policy_for_workers_that_fail_to_start() -> None:
    assert RespawnPolicy().delay(0, started=False, age=0.2, others_alive=True) is None  # never served: broken
    policy = RespawnPolicy(ever_started=True)
    assert [policy.delay(1, started=False, age=0.2, others_alive=False) for _ in range(START_ATTEMPTS)] == [
        0.5,
        1.0,
        None,
    ]
    policy = RespawnPolicy(ever_started=True)
    delays = [policy.delay(1, started=False, age=0.2, others_alive=True) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, MAX_BACKOFF, MAX_BACKOFF]  # another worker answers: keep trying
    assert policy.delay(1, started=True, age=20.0, others_alive=True) == 0.0
    assert policy.start_failures[1] == 0


# --- real processes ----------------------------------------------------------------------------------------------


def workers_of(pid: int) -> set[int]:
    """The child processes of `pid` (granian's workers)."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass  # the thread ended meanwhile
    return children


def two_workers(main: int, without: int | None = None) -> set[int] | None:
    """The two workers of `main` once there are two (none of them `without`), else None."""
    workers = workers_of(main)
    return workers if len(workers) == 2 and without not in workers else None


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def started_count(proc: Process) -> int:
    return len(re.findall(r"Started worker-[0-9]+\b", proc.log()))


def load(port: int, path: str, seconds: float, threads: int) -> list[tuple[float, bool]]:
    """`threads` clients sending requests one after another for `seconds`: (time sent, succeeded) each."""
    results: list[tuple[float, bool]] = []
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                ok = get(port, path)[0] == 200
            except (OSError, http.client.HTTPException):
                ok = False
            results.append((sent, ok))

    pool = [threading.Thread(target=client) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(seconds + 10)
    return results


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGABRT])
def test_a_worker_killed_under_load_is_respawned_and_the_others_keep_answering(upstream, start_gateway, sig):
    """SIGABRT is how a panic ends a worker (granian is built with panic = "abort")."""
    config = {
        "version": 3,
        "host": [upstream],
        "endpoints": [{"endpoint": "/x", "backend": [{"url_pattern": "/json/x"}]}],
    }
    gw = start_gateway(config, "--workers", "2")
    port, main = int(gw.url.rsplit(":", 1)[1]), gw.process.proc.pid
    before = wait_for(lambda: two_workers(main), 10, "two workers")
    wait_for(lambda: started_count(gw.process) >= 2, 10, "both workers started")
    victim = min(before)
    threads, killed_at = 4, []

    def kill_later() -> None:
        time.sleep(1.0)
        killed_at.append(time.monotonic())
        os.kill(victim, sig)

    killer = threading.Thread(target=kill_later)
    killer.start()
    results = load(port, "/x", 3.0, threads)
    killer.join()
    failed = [sent for sent, ok in results if not ok]
    after = [sent for sent, ok in results if ok and sent > killed_at[0] + 0.05]
    # Only connections the killed worker had taken can fail: one per client, and on a loaded machine a client's
    # reconnection may still be taken by the dying worker (a SIGABRT takes a moment): at most two per client.
    assert len(failed) <= 2 * threads, (len(failed), len(results))
    assert len(after) >= 20, len(after)  # the other worker kept answering meanwhile
    now = wait_for(lambda: two_workers(main, without=victim), 15, "a new worker")
    assert len(now - before) == 1
    wait_for(lambda: started_count(gw.process) >= 3, 15, "the new worker started")
    assert get(port, "/x")[0] == 200
    how = "killed by SIGKILL" if sig == signal.SIGKILL else "killed by SIGABRT (a panic in the HTTP server"
    assert re.search(
        rf"ERROR lambdagate: worker-\d \(pid {victim}\) died after [0-9.]+s of service: {re.escape(how)}", gw.log()
    ), gw.log()[-3000:]


def test_repeated_crashes_of_one_worker_do_not_stop_the_gateway(upstream, start_gateway):
    """granian's own respawn stops the server when a respawned worker dies again within 5.5 s."""
    config = {
        "version": 3,
        "host": [upstream],
        "endpoints": [{"endpoint": "/x", "backend": [{"url_pattern": "/json/x"}]}],
    }
    gw = start_gateway(config, "--workers", "2")
    port, main = int(gw.url.rsplit(":", 1)[1]), gw.process.proc.pid
    wait_for(lambda: started_count(gw.process) >= 2, 10, "both workers started")
    survivor = max(workers_of(main))
    started = time.monotonic()
    for round_ in range(3):
        victim = min(workers_of(main) - {survivor})
        os.kill(victim, signal.SIGABRT)
        wait_for(lambda: victim not in workers_of(main), 10, "the victim gone")
        assert get(port, "/x")[0] == 200  # the survivor answers meanwhile
        wait_for(lambda: started_count(gw.process) >= 3 + round_, 20, f"respawn {round_ + 1}")
    assert time.monotonic() - started < 15  # back-off 0.5 s, 1 s, 2 s
    assert gw.process.proc.poll() is None and len(workers_of(main)) == 2
    assert get(port, "/x")[0] == 200
    assert gw.log().count("killed by SIGABRT") == 3 and "crash loop" not in gw.log()


# --- a real panic, and workers that cannot start (tests/support/crashing_app.py) -------------------------------


def crashing_app(tmp_path: Path, workers: int, fail_file: Path) -> tuple[Process, int]:
    port = free_port()
    proc = Process(
        python_module("tests.support.crashing_app", str(port), str(workers)),
        tmp_path / f"crashing-{port}.log",
        {"CRASHING_APP_FAIL_START": str(fail_file)},
    )
    return proc, port


def test_a_panic_in_the_http_server_is_survived(tmp_path):
    proc, port = crashing_app(tmp_path, 2, tmp_path / "absent")
    try:
        wait_http(f"http://127.0.0.1:{port}/pid", proc=proc.proc)
        wait_for(lambda: started_count(proc) >= 2, 10, "both workers started")
        for round_ in range(3):  # each one within 5.5 s of the previous respawn: granian alone would exit
            with pytest.raises((OSError, http.client.HTTPException)):
                get(port, "/panic")
            wait_for(lambda: proc.log().count("killed by SIGABRT") > round_, 10, "the panicked worker gone")
            assert get(port, "/pid")[0] == 200
            wait_for(lambda: started_count(proc) >= 3 + round_, 15, f"respawn {round_ + 1}")
        log = proc.log()
        assert log.count("panicked at") == 3, log  # granian's own report of each panic
        assert log.count("killed by SIGABRT (a panic in the HTTP server aborts its worker); respawning it") == 3, log
        assert proc.proc.poll() is None
    finally:
        assert proc.stop() == 0  # SIGTERM: a clean stop


def test_a_gateway_whose_workers_cannot_start_exits_1(tmp_path):
    fail = tmp_path / "fail"
    fail.touch()
    proc, _ = crashing_app(tmp_path, 2, fail)
    try:
        assert proc.proc.wait(20) == 1
    finally:
        proc.stop()
    assert "failed to start (exit code 1) and no worker has ever started; stopping the gateway" in proc.log()


def started_then_failing(tmp_path: Path, workers: int) -> tuple[Process, int, Path]:
    """The crashing app with all its workers started; then starting fails, and one worker is killed."""
    fail = tmp_path / "fail"
    proc, port = crashing_app(tmp_path, workers, fail)
    try:
        wait_http(f"http://127.0.0.1:{port}/pid", proc=proc.proc)
        wait_for(lambda: started_count(proc) >= workers, 10, "every worker started")
    except Exception:
        proc.stop()
        raise
    fail.touch()
    os.kill(min(workers_of(proc.proc.pid)), signal.SIGKILL)
    return proc, port, fail


def test_a_worker_that_cannot_restart_is_retried_while_another_answers(tmp_path):
    proc, port, fail = started_then_failing(tmp_path, 2)
    try:
        wait_for(lambda: proc.log().count("died while starting") >= START_ATTEMPTS, 20, "failed restarts")
        assert proc.proc.poll() is None and get(port, "/pid")[0] == 200
        fail.unlink()
        wait_for(lambda: started_count(proc) >= 3, 20, "a restart once starting works again")
        assert get(port, "/pid")[0] == 200
    finally:
        assert proc.stop() == 0


def test_the_last_worker_failing_to_restart_stops_the_gateway(tmp_path):
    proc, _, _ = started_then_failing(tmp_path, 1)
    try:
        assert proc.proc.wait(20) == 1
    finally:
        proc.stop()
    log = proc.log()
    assert log.count("died while starting") == START_ATTEMPTS - 1, log
    assert "failed to start (exit code 1) and no other worker is alive; stopping the gateway" in log
