#!/usr/bin/python3
"""Checks deploy/: YAML lint, every kustomize overlay renders, the container arguments in the
manifests are flags the flatfleet binary accepts, ports agree, the coordinator lists every worker
pod, and the Prometheus config and rules are valid and only name metrics flatfleet exports.

usage: check_deploy.py SOURCE_DIR FLATFLEET_BINARY     (exit 77: a tool is missing, skipped)
"""
import pathlib
import re
import shutil
import subprocess
import sys

import yaml

SKIP = 77


def run(command, **kwargs):
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs).stdout


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def accepted_flags(binary, role):
    help_text = run([binary, "serve", role, "--help"])
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))


def check_overlay(overlay, binary, flags_by_role):
    documents = [d for d in yaml.safe_load_all(run(["kubectl", "kustomize", str(overlay)])) if d]
    sets = {d["metadata"]["name"]: d for d in documents if d["kind"] == "StatefulSet"}
    coordinator = sets.get("flatfleet-coordinator")
    worker = sets.get("flatfleet-worker")
    if coordinator is None or worker is None:
        fail(f"{overlay}: needs the flatfleet-coordinator and flatfleet-worker StatefulSets")
    worker_addresses = []
    for role, stateful_set in (("coordinator", coordinator), ("worker", worker)):
        pod = stateful_set["spec"]["template"]
        container = pod["spec"]["containers"][0]
        args = container["args"]
        if args[:2] != ["serve", role]:
            fail(f"{overlay}: {role} container args must start with 'serve {role}', got {args[:2]}")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        values = {}
        for arg in args[2:]:
            flag, _, value = arg.partition("=")
            if flag not in flags_by_role[role]:
                fail(f"{overlay}: {role} flag {flag} is not accepted by 'flatfleet serve {role}'")
            values.setdefault(flag, []).append(value)
        if not values.get("--listen", [""])[0].endswith(f":{ports['grpc']}"):
            fail(f"{overlay}: {role} --listen does not use containerPort grpc {ports['grpc']}")
        if not values.get("--metrics-listen", [""])[0].endswith(f":{ports['metrics']}"):
            fail(f"{overlay}: {role} --metrics-listen does not use containerPort metrics")
        annotation = pod["metadata"].get("annotations", {}).get("prometheus.io/port")
        if annotation != str(ports["metrics"]):
            fail(f"{overlay}: {role} prometheus.io/port {annotation} != metrics port")
        if role == "coordinator":
            worker_addresses = values.get("--worker", [])
            if not values.get("--model"):
                fail(f"{overlay}: the coordinator has no --model")
    replicas = worker["spec"]["replicas"]
    expected = [f"flatfleet-worker-{i}.flatfleet-worker:7071" for i in range(replicas)]
    if worker_addresses != expected:
        fail(f"{overlay}: coordinator --worker list {worker_addresses} != the {replicas} pods")
    print(f"ok: {overlay.name} ({len(documents)} objects, {replicas} workers)")


def exported_metric_names(source_dir):
    names = set()
    for path in list(source_dir.glob("coordinator/**/*.cc")) + list(source_dir.glob("worker/**/*.cc")):
        names.update(re.findall(r'"(flatfleet_[a-z_]+)"', path.read_text()))
    return names


def check_prometheus(source_dir):
    prometheus_dir = source_dir / "deploy" / "prometheus"
    run(["promtool", "check", "config", str(prometheus_dir / "prometheus.yml")])
    run(["promtool", "check", "rules", str(prometheus_dir / "flatfleet-rules.yml")])
    known = exported_metric_names(source_dir)
    rules = yaml.safe_load((prometheus_dir / "flatfleet-rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in re.findall(r"\b(flatfleet_[a-z_]+)", rule["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                if name not in known and base not in known:
                    fail(f"rule {rule.get('alert') or rule.get('record')} uses unknown {name}")
    print(f"ok: prometheus config and rules ({len(known)} exported metric names)")


def main():
    source_dir = pathlib.Path(sys.argv[1])
    binary = sys.argv[2]
    for tool in ("kubectl", "yamllint", "promtool"):
        if shutil.which(tool) is None:
            print(f"skipped: {tool} not installed")
            return SKIP
    run(["yamllint", "-s", "-c", str(source_dir / "deploy" / ".yamllint"),
         str(source_dir / "deploy")])
    flags = {role: accepted_flags(binary, role) for role in ("coordinator", "worker")}
    overlays = sorted((source_dir / "deploy" / "k8s" / "overlays").iterdir())
    if not overlays:
        fail("no overlays")
    for overlay in overlays:
        check_overlay(overlay, binary, flags)
    check_prometheus(source_dir)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        fail(f"{' '.join(error.cmd)} exited {error.returncode}:\n{error.stdout}\n{error.stderr}")
