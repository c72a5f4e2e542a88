#!/usr/bin/python3
"""deploy/container/flatfleet-ranks with two CPU ranks: each rank listens on its own ports; the
pod-wide probes say alive at once and ready only when every rank has loaded its model; a rank
that exits takes the pod's other ranks down with a failing status; SIGTERM drains every rank and
exits 0.

usage: ranks_launcher_test.py SOURCE_DIR FLATFLEET_BINARY
"""
import os
import random
import signal
import socket
import subprocess
import sys
import time

SEED = int(os.environ.get("FLATFLEET_TEST_SEED", random.SystemRandom().randrange(1 << 30)))


def fail(message):
    print(f"FAIL (FLATFLEET_TEST_SEED={SEED}): {message}")
    sys.exit(1)


def free_port_block(rng, count):
    """A base port with `count` consecutive free ports (chosen from the seed)."""
    for _ in range(200):
        base = rng.randrange(20000, 60000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("0.0.0.0", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    fail("no free ports")


def check(launcher, kind, metrics_port):
    return subprocess.run([launcher, "--check", kind, "--ranks", "2", "--metrics-port",
                           str(metrics_port)], capture_output=True, text=True)


def wait_for(predicate, what, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    fail(f"timed out waiting for {what}")


def start(launcher, binary, rng, worker_args):
    grpc_port, metrics_port = free_port_block(rng, 2), free_port_block(rng, 2)
    process = subprocess.Popen(
        [launcher, "--ranks", "2", "--grpc-port", str(grpc_port), "--metrics-port",
         str(metrics_port), "--", "serve", "worker", "--device=cpu"] + worker_args,
        env=dict(os.environ, FLATFLEET_BIN=binary), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: check(launcher, "alive", metrics_port).returncode == 0, "both ranks alive")
    return process, metrics_port


def ranks_of(process):
    with open(f"/proc/{process.pid}/task/{process.pid}/children") as children:
        return [int(pid) for pid in children.read().split()]


def main():
    launcher = os.path.join(sys.argv[1], "deploy", "container", "flatfleet-ranks")
    binary = sys.argv[2]
    rng = random.Random(SEED)

    # No model: alive, not ready (each rank waits for the coordinator's LoadShard).
    process, metrics_port = start(launcher, binary, rng, [])
    not_ready = check(launcher, "ready", metrics_port)
    if not_ready.returncode == 0 or "WORKER_STATE_IDLE" not in not_ready.stdout:
        fail(f"ready before any model was loaded: {not_ready.stdout!r}")
    # One rank dies: the launcher stops the other and fails, so the pod restarts as a whole.
    ranks = ranks_of(process)
    if len(ranks) != 2:
        fail(f"expected 2 rank processes, found {ranks}")
    os.kill(ranks[1], signal.SIGKILL)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        fail("the launcher kept running after a rank died")
    if process.returncode == 0 or "a rank exited" not in output:
        fail(f"a dead rank did not fail the launcher (exit {process.returncode}):\n{output}")
    if os.path.exists(f"/proc/{ranks[0]}") and "zombie" not in open(
            f"/proc/{ranks[0]}/status").read().lower():
        fail("the surviving rank was not stopped")

    # With a model: ready once both ranks loaded it; SIGTERM drains both and exits 0.
    process, metrics_port = start(launcher, binary, rng, ["--model=builtin:demo"])
    wait_for(lambda: check(launcher, "ready", metrics_port).returncode == 0, "both ranks ready")
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    if process.returncode != 0 or output.count("drained") != 2:
        fail(f"SIGTERM did not drain both ranks cleanly (exit {process.returncode}):\n{output}")
    print("ok: flatfleet-ranks (ports per rank, alive/ready checks, failure and drain)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
