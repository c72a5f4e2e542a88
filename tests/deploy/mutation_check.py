#!/usr/bin/python3
"""Proves check_deploy.py can fail: applies one defect at a time to a copy of deploy/ (and of the
sources it reads) and expects the check to reject each, naming the problem.

usage: mutation_check.py SOURCE_DIR FLATFLEET_BINARY        (exit 77: a tool is missing)
"""
import concurrent.futures
import pathlib
import shutil
import subprocess
import sys
import tempfile

# (file under the copy, text to replace, replacement, words the failure message must contain)
MUTATIONS = [
    ("deploy/k8s/base/worker.yaml", "              service: flatfleet.v1.WorkerService\n"
     "            periodSeconds: 10\n            failureThreshold: 3",
     "            periodSeconds: 10\n            failureThreshold: 3", "readinessProbe must ask"),
    ("deploy/k8s/base/worker.yaml", "failureThreshold: 180", "failureThreshold: 30",
     "startupProbe allows 300 s"),
    ("deploy/k8s/base/worker.yaml", "publishNotReadyAddresses: true",
     "publishNotReadyAddresses: false", "publishNotReadyAddresses"),
    ("deploy/k8s/base/worker.yaml", "- --drain-timeout=90", "- --drain-timeout-seconds=90",
     "--drain-timeout-seconds is not a flag"),
    ("deploy/k8s/base/coordinator.yaml", "--worker-dns=flatfleet-worker:7071",
     "--worker-dns=flatfleet-worker:7072", "--worker-dns port 7072"),
    ("deploy/k8s/overlays/gpu/worker-gpu.yaml", "nvidia.com/gpu: 8", "nvidia.com/gpu: 4",
     "nvidia.com/gpu limit 4"),
    ("deploy/k8s/overlays/gpu/worker-gpu.yaml", "{name: metrics-7, containerPort: 9108}",
     "{name: metrics-7, containerPort: 9118}", "rank 7 needs containerPorts"),
    ("deploy/k8s/overlays/gpu/worker-gpu.yaml", "              readOnly: true\n", "",
     "readOnly"),
    ("deploy/k8s/overlays/gpu/worker-gpu.yaml",
     'command: [flatfleet-ranks, --check, alive, --ranks, "8"',
     'command: [flatfleet-ranks, --check, alive, --ranks, "7"', "livenessProbe must be"),
    ("deploy/k8s/overlays/gpu/kustomization.yaml", "value: --workers-per-host=8",
     "value: --workers-per-host=4", "--workers-per-host 4"),
    ("deploy/k8s/overlays/gpu-lws/leaderworkerset.yaml", "  startupPolicy: LeaderCreated",
     "  startupPolicy: LeaderCreated\n  groupSize: 2", "spec.groupSize: not a field"),
    ("deploy/k8s/overlays/gpu-lws/leaderworkerset.yaml", "restartPolicy: RecreateGroupOnPodRestart",
     "restartPolicy: Recreate", "'Recreate' is not one of"),
    ("deploy/k8s/components/monitoring/flatfleet-dashboard.json",
     "flatfleet_worker_generation_tokens_total", "flatfleet_worker_generated_tokens_total",
     "flatfleet_worker_generated_tokens_total, which flatfleet does not export"),
    ("deploy/prometheus/flatfleet-rules.yml", 'flatfleet_worker_state{state="failed"} == 1',
     'flatfleet_worker_status{state="failed"} == 1', "flatfleet_worker_status"),
    ("deploy/container/Dockerfile.cuda", "USER flatfleet", "USER root", "non-root USER"),
    ("deploy/k8s/components/monitoring/podmonitor.yaml",
     "    - {port: metrics-3, path: /metrics, interval: 15s}\n", "", "PodMonitor misses"),
]


def make_copy(source_dir, directory):
    copy = pathlib.Path(directory)
    shutil.copytree(source_dir / "deploy", copy / "deploy")
    shutil.copy(source_dir / ".dockerignore", copy / ".dockerignore")
    for tree in ("coordinator", "worker"):  # metric names and the health service name
        shutil.copytree(source_dir / tree, copy / tree,
                        ignore=lambda _, names: [n for n in names if "." in n and
                                                 not n.endswith(".cc")])
    return copy


def run_check(check, copy, binary):
    return subprocess.run([sys.executable, str(check), str(copy), binary], capture_output=True,
                          text=True)


def try_mutation(source_dir, check, binary, mutation):
    """Returns an error message, or None when the check rejected the defect as expected."""
    path, old, new, expected = mutation
    with tempfile.TemporaryDirectory() as directory:
        copy = make_copy(source_dir, directory)
        target = copy / path
        original = target.read_text()
        if old not in original:
            return f"mutation of {path}: {old!r} not found (update this test)"
        target.write_text(original.replace(old, new, 1))
        result = run_check(check, copy, binary)
    if result.returncode == 0 or expected not in result.stdout:
        return (f"{path}: {new!r} was not rejected with '{expected}':\n"
                f"{result.stdout}{result.stderr}")
    print(f"ok: rejected {path}: {result.stdout.strip().splitlines()[-1][:110]}")
    return None


def main():
    source_dir = pathlib.Path(sys.argv[1]).resolve()
    binary = sys.argv[2]
    check = source_dir / "tests" / "deploy" / "check_deploy.py"
    for tool in ("kubectl", "yamllint", "promtool"):
        if shutil.which(tool) is None:
            print(f"skipped: {tool} not installed")
            return 77
    with tempfile.TemporaryDirectory() as directory:
        clean = run_check(check, make_copy(source_dir, directory), binary)
    if clean.returncode != 0:
        print(f"FAIL: the unmodified copy does not pass:\n{clean.stdout}{clean.stderr}")
        return 1
    # Each defect on its own copy, a few at a time (the checks mostly wait on kustomize).
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        errors = [e for e in pool.map(lambda m: try_mutation(source_dir, check, binary, m),
                                      MUTATIONS) if e]
    for error in errors:
        print(f"FAIL: {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
