"""`make bench-rss`: is a worker's memory flat over a long run? (`python bench/run.py rss [--requests N]`)

For each of /proxy and /lambda, a fresh gateway (one worker, pinned like in the comparison) is loaded by
wrk in 10 s chunks until N requests (default 1M) have been served or 360 s have passed. The worker's RSS is
read after every chunk; growth is measured from the end of the first chunk (pools, caches and allocator
arenas are warm by then) to the end of the run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import wrk
from procs import rss_mb, tree

CHUNK_S = 10
MAX_S = 360  # a 1M-request run needs ~5,000 req/s for 200 s; on a slow or busy machine it stops here
RUNS = {"gateway_http": "/proxy", "gateway_lambda": "/lambda"}


def run(args: argparse.Namespace, start_servers, stop_all, machine) -> dict:
    from run import LOAD_CPU, RESULTS

    pin = (os.cpu_count() or 1) >= 2
    info = machine(
        "rss", {"requests_per_scenario": args.requests, "chunk_s": CHUNK_S, "max_s": MAX_S, "connections": 50}
    )
    out: dict[str, dict] = {}
    for name, path in RUNS.items():
        tmp = Path(tempfile.mkdtemp(prefix="lambdagate-rss-"))
        servers, ports = start_servers({"gateway"}, tmp, RESULTS, pin)
        try:
            workers = tree(servers["gateway"].pid)[1:]  # granian's worker process(es), not the supervisor
            url = f"http://127.0.0.1:{ports['gateway']}{path}"
            served, samples, started = 0, [], time.monotonic()
            while served < args.requests and time.monotonic() - started < MAX_S:
                res = wrk.run(url, seconds=CHUNK_S, connections=50, server_pids=workers, cpus=LOAD_CPU if pin else None)
                served += res.requests
                samples.append(
                    {
                        "requests": served,
                        "rss_mb": round(sum(rss_mb(p) for p in workers), 2),
                        "rps": round(res.rps),
                        "errors": res.errors,
                    }
                )
                print(
                    f"  rss {name:16} {served:9d} requests  worker RSS {samples[-1]['rss_mb']:7.2f} MB  "
                    f"{res.rps:7.0f} req/s",
                    flush=True,
                )
        finally:
            stop_all(servers)
            shutil.rmtree(tmp, ignore_errors=True)
        first, last = samples[0]["rss_mb"], samples[-1]["rss_mb"]
        out[name] = {
            "requests": served,
            "seconds": round(time.monotonic() - started, 1),
            "workers": len(workers),
            "rss_first_mb": first,
            "rss_last_mb": last,
            "rss_max_mb": max(s["rss_mb"] for s in samples),
            "growth_pct": round((last - first) / first * 100, 2),
            "samples": samples,
        }
    info["loadavg_end"] = os.getloadavg()[0]
    return {"machine": info, "runs": out}
