"""Connections that hold a worker without sending requests: `read_header_timeout` from accept, `idle_timeout`
between keep-alive requests, the per-worker `max_connections`, and the descriptor limit raised at start-up.
Raw sockets against a real gateway on 127.0.0.1."""

from __future__ import annotations

import resource
import selectors
import socket
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from lambdagate.supervisor import DESCRIPTOR_RESERVE, connection_cap
from tests.support.procs import Process, free_port, wait_http
from tests.test_workers import wait_for, workers_of


def config(upstream: str, **server) -> dict:
    return {
        "version": 3,
        "host": [upstream],
        "extra_config": {"lambdagate/server": server},
        "endpoints": [{"endpoint": "/x", "backend": [{"url_pattern": "/json/x"}]}],
    }


def port_of(gw) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def closed_after(socks: list[socket.socket], since: list[float], limit: float) -> list[float | None]:
    """For each socket, how long after `since` the server closed it (EOF or reset); None if still open at `limit`."""
    result: list[float | None] = [None] * len(socks)
    with selectors.DefaultSelector() as sel:
        for i, sock in enumerate(socks):
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ, i)
        deadline = time.monotonic() + limit
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                try:
                    if key.fileobj.recv(65536):
                        continue  # data (a reply): keep waiting for the close
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    pass
                result[key.data] = time.monotonic() - since[key.data]
                sel.unregister(key.fileobj)
    return result


def request(sock: socket.socket, path: str = "/x") -> bytes:
    """One keep-alive request; the reply's head and body (read by Content-Length)."""
    sock.settimeout(10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_idle_and_slow_connections_are_closed_within_read_header_timeout(upstream, start_gateway):
    """The attack held 2,000 connections that sent nothing for over 60 s (the timer only began at a first byte)."""
    port = port_of(start_gateway(config(upstream, read_header_timeout="1s")))
    socks, since = [], []
    for _ in range(50):
        socks.append(connect(port))
        since.append(time.monotonic())
    slow = connect(port)  # a head that never ends, one byte at a time
    slow_since = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:
        for byte in b"GET /x HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
            if stop.wait(0.1):
                return
            try:
                slow.send(bytes([byte]))
            except OSError:
                return

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        closed = closed_after(socks + [slow], since + [slow_since], 6.0)
    finally:
        stop.set()
        trickler.join()
    assert all(t is not None for t in closed), closed  # every one closed by the server
    assert max(closed) < 1.0 + 1.5, closed  # within the timeout (from accept) plus slack
    assert min(closed) > 0.8, closed
    with connect(port) as sock:  # and the gateway still serves
        assert request(sock).startswith(b"HTTP/1.1 200")


def test_keep_alive_connection_idle_past_idle_timeout_is_closed(upstream, start_gateway):
    port = port_of(start_gateway(config(upstream, read_header_timeout="5s", idle_timeout="1s")))
    with connect(port) as sock:
        assert request(sock).startswith(b"HTTP/1.1 200")
        time.sleep(0.4)  # within idle_timeout: the connection is reused
        assert request(sock).startswith(b"HTTP/1.1 200")
        done = time.monotonic()
        (closed,) = closed_after([sock], [done], 5.0)
    assert closed is not None and 0.6 < closed < 2.0, closed
    # One timer in hyper: a new connection that sends nothing is idle too, so it is closed as soon.
    with connect(port) as sock:
        (closed,) = closed_after([sock], [time.monotonic()], 5.0)
    assert closed is not None and closed < 2.0, closed


def accepted(worker: int, port: int) -> int:
    """Established connections to `port` whose socket is held by the process `worker`."""
    inodes = set()
    for fd in Path(f"/proc/{worker}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def test_connections_past_max_connections_wait_outside_the_worker(upstream, start_gateway):
    """granian cannot refuse a connection: past the cap the worker stops accepting, so new connections wait in
    the kernel's accept queue and cost the worker no descriptor; they are served when a slot frees."""
    gw = start_gateway(config(upstream, max_connections=5, read_header_timeout="2s"))
    port, worker = port_of(gw), next(iter(workers_of(gw.process.proc.pid)))
    assert "with 1 worker(s) of up to 5 connections" in gw.log()
    idle = [connect(port) for _ in range(5)]
    wait_for(lambda: accepted(worker, port) == 5, 5, "five accepted")
    extra = [connect(port) for _ in range(5)]  # the kernel completes the handshake; the worker does not accept
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], accepted(worker, port))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        started = time.monotonic()
        with connect(port) as sock:  # queued behind the idle ones: served once they are closed
            assert request(sock).startswith(b"HTTP/1.1 200")
        waited = time.monotonic() - started
    finally:
        stop.set()
        sampler.join()
        for sock in idle + extra:
            sock.close()
    # granian frees a connection's slot when its task ends, a moment before the socket is closed: when the idle
    # connections are cut, one new connection may be accepted while one old one is still open (seen once under load,
    # in a fresh clone's `make test`). The cap holds: never the ten that were waiting.
    assert peak[0] <= 5 + 1, peak
    assert 1.0 < waited < 2 * 2 + 3, waited  # two rounds of idle connections cut at 2 s, plus slack


def test_connection_cap_leaves_room_for_the_workers_own_descriptors():
    assert connection_cap(10_000, 1_048_576) == 10_000
    assert connection_cap(10_000, 8192) == 8192 - DESCRIPTOR_RESERVE
    assert connection_cap(10_000, 1024) == 512  # a small limit: half of it for connections
    assert connection_cap(100, 1024) == 100
    assert connection_cap(10_000, 1) == 1


def run_with_nofile(tmp_path: Path, soft: int, hard: int) -> Process:
    """`lambdagate run` started with the given descriptor limits."""
    path, port = tmp_path / f"krakend-{soft}.json", free_port()
    path.write_bytes(
        orjson.dumps(
            {
                "version": 3,
                "endpoints": [{"endpoint": "/x", "backend": [{"host": ["http://127.0.0.1:9"], "url_pattern": "/"}]}],
            }
        )
    )
    boot = (
        "import os, resource, sys;"
        " resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])));"
        " os.execv(sys.executable, [sys.executable, '-m', 'lambdagate', *sys.argv[3:]])"
    )
    proc = Process(
        [
            sys.executable,
            "-c",
            boot,
            str(soft),
            str(hard),
            "run",
            "-c",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        tmp_path / f"gateway-{port}.log",
    )
    wait_http(f"http://127.0.0.1:{port}/__health", proc=proc.proc, timeout=30)
    return proc


def worker_nofile(main: int) -> int:
    worker = next(iter(workers_of(main)))
    line = next(x for x in Path(f"/proc/{worker}/limits").read_text().splitlines() if x.startswith("Max open files"))
    return int(line.split()[3])  # the soft limit


def test_run_raises_the_soft_descriptor_limit_and_logs_it(tmp_path):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 1024:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")
    proc = run_with_nofile(tmp_path, 512, hard)
    try:
        assert f"INFO lambdagate: open files limit: {hard} (raised from 512)" in proc.log()
        assert worker_nofile(proc.proc.pid) == hard  # the workers inherit it
    finally:
        proc.stop()
    proc = run_with_nofile(tmp_path, 1024, 1024)  # nothing to raise: connections are capped below the limit
    try:
        log = proc.log()
        assert "INFO lambdagate: open files limit: 1024\n" in log
        assert (
            "WARNING lambdagate: each worker accepts at most 512 connections, not max_connections 10000: the "
            "open files limit (1024) keeps room for backend connections"
        ) in log
        assert "with 1 worker(s) of up to 512 connections" in log
    finally:
        proc.stop()
