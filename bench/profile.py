"""Where a gateway worker's time goes: py-spy samples it while wrk loads one scenario.

`python bench/profile.py gateway_http [--seconds 10]` writes bench/results/profile-<scenario>.collapsed
(collapsed stacks, flamegraph.pl / speedscope input; not in git) and profile-<scenario>.txt: the functions
with the most samples, own and inclusive. "<native, no Python frame>" is time in uvloop/granian C code (socket I/O, task
steps, the loop itself) with no Python function on the stack.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import wrk
from procs import tree
from run import BIN, LOAD_CPU, RESULTS, SCENARIOS, start_servers, stop_all


def summarise(collapsed: Path, top: int = 25, cpu_us_per_req: float | None = None) -> str:
    """Own and inclusive samples per function; with `cpu_us_per_req`, also as µs per request (the samples
    scaled to the worker's measured CPU time per request)."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
            if " (" in f
            else (f or "<native, no Python frame>")
            for f in stack.split(";")
        ]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    us_per_sample = cpu_us_per_req / total if cpu_us_per_req and total else None

    def row(f: str, n: int) -> str:
        us = f"{n * us_per_sample:6.1f} µs/req " if us_per_sample else ""
        return f"  {100 * n / total:5.1f}%  {us} {f}"

    lines = [
        f"{total} samples",
        "",
        "own time:",
        *(row(f, n) for f, n in own.most_common(top)),
        "",
        "inclusive:",
        *(row(f, n) for f, n in incl.most_common(top)),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    server, path = SCENARIOS[args.scenario]
    tmp = Path(tempfile.mkdtemp(prefix="lambdagate-profile-"))
    servers, ports = start_servers({server}, tmp, RESULTS, pin=True)
    out = RESULTS / f"profile-{args.scenario}.collapsed"
    try:
        url = f"http://127.0.0.1:{ports[server]}{path}"
        wrk.run(url, seconds=2, connections=50, server_pids=[], cpus=LOAD_CPU)  # warm-up
        worker = tree(servers[server].pid)[-1]  # the serving process (granian worker, nginx worker)
        spy = subprocess.Popen(
            [
                "taskset",
                "-c",
                LOAD_CPU,
                str(BIN / "py-spy"),
                "record",
                "--nonblocking",
                "-r",
                "200",
                "-d",
                str(int(args.seconds)),
                "-f",
                "raw",
                "-o",
                str(out),
                "-p",
                str(worker),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        res = wrk.run(url, seconds=args.seconds, connections=50, server_pids=[worker], cpus=LOAD_CPU)
        spy.wait(args.seconds + 30)
        print(f"{args.scenario}: {res.rps:.0f} req/s under py-spy, {res.cpu_us_per_req:.1f} µs/req")
    finally:
        stop_all(servers)
        shutil.rmtree(tmp, ignore_errors=True)
    text = summarise(out, cpu_us_per_req=res.cpu_us_per_req)
    summary = out.with_suffix(".txt")
    summary.write_text(
        f"{args.scenario}: {res.rps:.0f} req/s under py-spy (200 Hz), {res.cpu_us_per_req:.1f} µs/req\n{text}\n"
    )
    print(text[:3000])


if __name__ == "__main__":
    main()
