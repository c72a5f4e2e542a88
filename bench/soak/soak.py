#!/usr/bin/env python3
"""Soak benchmark of the coordinator/worker service (bench/RESULTS.md, "Soak").

Starts two `flatfleet serve worker` processes and one `flatfleet serve coordinator` on loopback
(built-in demo model), submits one batch of --requests requests, kills a worker with SIGKILL
every --kill-interval seconds (alternating between the two) and restarts it on the same port,
samples the coordinator's RSS, and at the end checks the results: every custom_id exactly once.
Prints a JSON summary (throughput, RSS over time, exact counts, kills).

  python3 bench/soak/soak.py --binary build/bin/flatfleet [--requests 100000] [--kill-interval 30]
"""
import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def wait_for_line(process, prefix, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited before printing '{prefix}'")
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError(f"no '{prefix}' within {timeout} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--kill-interval", type=float, default=30.0)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this long")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="flatfleet_soak_")
    # A private copy: a rebuild during the run must not replace the binary under it.
    binary = os.path.join(work, "flatfleet")
    shutil.copy2(args.binary, binary)
    args.binary = binary
    log = open(os.path.join(work, "processes.log"), "w")
    ports = [free_port(), free_port()]
    workers = [None, None]

    def start_worker(i):
        workers[i] = subprocess.Popen(
            [args.binary, "serve", "worker", "--listen", f"127.0.0.1:{ports[i]}"],
            stdout=subprocess.PIPE, stderr=log, text=True)
        wait_for_line(workers[i], "listening on ", 120)

    for i in range(2):
        start_worker(i)
    coordinator = subprocess.Popen(
        [args.binary, "serve", "coordinator", "--listen", "127.0.0.1:0", "--db",
         os.path.join(work, "jobs.db"), "--model", "demo=builtin:demo",
         "--max-batch-lines", str(args.requests), "--max-upload-bytes", str(1 << 30),
         "--worker", f"127.0.0.1:{ports[0]}", "--worker", f"127.0.0.1:{ports[1]}"],
        stdout=subprocess.PIPE, stderr=log, text=True)
    address = wait_for_line(coordinator, "listening on ", 120)

    requests_path = os.path.join(work, "requests.jsonl")
    with open(requests_path, "w") as f:
        for i in range(args.requests):
            f.write(json.dumps({"custom_id": f"r{i}", "body": {
                "prompt": f"Soak request {i}:", "max_tokens": args.max_tokens, "seed": i}}) + "\n")
    cli = [args.binary]
    submitted = subprocess.run(cli + ["submit", requests_path, "--model", "demo",
                                      "--coordinator", address],
                               capture_output=True, text=True, check=True)
    batch = submitted.stdout.split()[-1]
    start = time.time()
    rss = []
    kills = 0
    next_kill = start + args.kill_interval
    next_sample = start
    state = ""
    while time.time() - start < args.timeout:
        now = time.time()
        if now >= next_sample:
            rss.append((round(now - start, 1), rss_mib(coordinator.pid)))
            next_sample = now + 5
        if now >= next_kill:
            victim = kills % 2
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            start_worker(victim)
            kills += 1
            next_kill = now + args.kill_interval
        status = subprocess.run(cli + ["status", batch, "--coordinator", address],
                                capture_output=True, text=True)
        state = next((line.split()[-1] for line in status.stdout.splitlines()
                      if line.startswith("state:")), "")
        if state in ("completed", "failed", "cancelled"):
            break
        time.sleep(1)
    elapsed = time.time() - start
    out_path = os.path.join(work, "out.jsonl")
    subprocess.run(cli + ["results", batch, "-o", out_path, "--coordinator", address], check=True)
    per_id = collections.Counter()
    responses = errors = 0
    with open(out_path) as f:
        for line in f:
            record = json.loads(line)
            per_id[record["custom_id"]] += 1
            # OpenAI's shape: a failure is an error line or a non-200 response.
            if record.get("error") or record["response"]["status_code"] != 200:
                errors += 1
            else:
                responses += 1
    expected = {f"r{i}" for i in range(args.requests)}
    summary = {
        "requests": args.requests, "state": state, "seconds": round(elapsed, 1),
        "requests_per_second": round(args.requests / elapsed, 1), "worker_kills": kills,
        "output_lines": sum(per_id.values()), "responses": responses, "errors": errors,
        "missing": len(expected - set(per_id)), "duplicated": sum(1 for c in per_id.values() if c > 1),
        "coordinator_rss_mib_over_time": rss, "work_dir": work,
    }
    print(json.dumps(summary, indent=1))
    for process in workers + [coordinator]:
        process.send_signal(signal.SIGTERM)
    for process in workers + [coordinator]:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    ok = state == "completed" and summary["missing"] == 0 and summary["duplicated"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
