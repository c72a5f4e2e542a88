#!/usr/bin/python3
"""Checks deploy/ against the binary it deploys:
  - yamllint over deploy/; every kustomize overlay renders (alone and with the monitoring
    component);
  - every argument the manifests give `flatfleet serve coordinator|worker` (directly or through
    flatfleet-ranks) is a flag the binary's --help lists, and the flags flatfleet-ranks adds too;
  - ports: --listen/--metrics-listen against containerPorts (one pair per rank), Services,
    probes, the coordinator's --worker-dns target and --workers-per-host, PodMonitor and
    ServiceMonitor port names, the Prometheus scrape ports and annotations;
  - probes: readiness and startup ask the worker's named health service (the name the worker
    publishes) or every rank's READY state, the startup budget covers a 70B load (30 min),
    liveness asks only whether the process is alive;
  - GPU overlays request one nvidia.com/gpu per rank, run --device=cuda and mount the models
    read-only where the coordinator's --model points;
  - LeaderWorkerSet objects against a minimal schema of the LWS v1 API (written from the LWS
    API's fields, not the CRD itself, which is not vendored here): unknown fields fail, since the
    API server would silently prune them;
  - Prometheus config and rules pass promtool, the PrometheusRule equals the rules file, and
    rules and dashboard queries only name metrics flatfleet exports;
  - the images: multi-stage, non-root final stage, CUDA devel -> runtime base with a /models
    volume, and .dockerignore keeping build trees and weights out of the context.

usage: check_deploy.py SOURCE_DIR FLATFLEET_BINARY           (exit 77: a tool is missing)
       check_deploy.py --write-prometheusrule SOURCE_DIR     (regenerates the PrometheusRule)
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

SKIP = 77
# What the startup probe must allow: a 70B bf16 checkpoint (141 GB) read at >= 80 MB/s from a
# cold network volume, plus group formation (docs/deploy.md).
STARTUP_BUDGET_SECONDS = 30 * 60
LAUNCHER = "flatfleet-ranks"
LAUNCHER_FLAGS = ("--gpu", "--listen", "--metrics-listen")  # added per rank by flatfleet-ranks


def run(command, **kwargs):
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs).stdout


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def accepted_flags(binary, role):
    help_text = run([binary, "serve", role, "--help"])
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))


def worker_health_service_name(source_dir):
    text = (source_dir / "worker" / "serving" / "worker_process.cc").read_text()
    match = re.search(r'kHealthServiceName\[\] = "([^"]+)"', text)
    if not match:
        fail("worker_process.cc: kHealthServiceName not found")
    return match.group(1)


def render(path):
    return [d for d in yaml.safe_load_all(run(["kubectl", "kustomize", str(path)])) if d]


def render_with_component(overlay, component):
    with tempfile.TemporaryDirectory() as directory:
        relative = lambda p: os.path.relpath(p, directory)  # kustomize refuses absolute roots
        (pathlib.Path(directory) / "kustomization.yaml").write_text(
            f"resources: [{relative(overlay)}]\ncomponents: [{relative(component)}]\n")
        return render(directory)


def parse_flags(where, args, accepted):
    values = {}
    for arg in args:
        flag, _, value = arg.partition("=")
        if flag not in accepted:
            fail(f"{where}: {flag} is not a flag the binary's --help lists")
        values.setdefault(flag, []).append(value)
    return values


def port_of(address):
    return int(address.rpartition(":")[2])


# ---------------------------------------------------------------------------------------------
# LeaderWorkerSet: a minimal structural schema of leaderworkerset.x-k8s.io/v1 (the fields of
# the LWS API types; pod templates are checked as Kubernetes pod specs elsewhere in this file).
INT = "int"
INT_OR_STRING = "int-or-string"
POD_TEMPLATE = "pod-template"
LWS_SCHEMA = {
    "apiVersion": "leaderworkerset.x-k8s.io/v1",
    "spec": {
        "replicas": INT,
        "startupPolicy": {"enum": ["LeaderCreated", "LeaderReady"]},
        "leaderWorkerTemplate": {
            "size": INT,
            "restartPolicy": {"enum": ["RecreateGroupOnPodRestart", "None", "Default"]},
            "leaderTemplate": POD_TEMPLATE,
            "workerTemplate": POD_TEMPLATE,
            "subGroupPolicy": {"subGroupSize": INT},
            "resizePolicy": {"enum": ["Recreate", "None"]},
            "volumeClaimTemplates": "list",
        },
        "rolloutStrategy": {
            "type": {"enum": ["RollingUpdate"]},
            "rollingUpdateConfiguration": {"maxUnavailable": INT_OR_STRING,
                                           "maxSurge": INT_OR_STRING, "partition": INT},
        },
        "networkConfig": {"subdomainPolicy": {"enum": ["Shared", "UniquePerReplica"]}},
    },
}
LWS_REQUIRED = [("spec", "leaderWorkerTemplate", "workerTemplate")]


def check_against_schema(where, value, schema):
    if schema == INT:
        if not isinstance(value, int) or value < 0:
            fail(f"{where}: expected a non-negative integer, got {value!r}")
    elif schema == INT_OR_STRING:
        if not isinstance(value, (int, str)) or (isinstance(value, str) and
                                                 not re.fullmatch(r"\d+%?", value)):
            fail(f"{where}: expected an integer or a percentage, got {value!r}")
    elif schema == POD_TEMPLATE:
        if not isinstance(value, dict) or set(value) - {"metadata", "spec"} or \
                not value.get("spec", {}).get("containers"):
            fail(f"{where}: expected a pod template with containers")
    elif schema == "list":
        if not isinstance(value, list):
            fail(f"{where}: expected a list")
    elif "enum" in schema:
        if value not in schema["enum"]:
            fail(f"{where}: {value!r} is not one of {schema['enum']}")
    else:
        if not isinstance(value, dict):
            fail(f"{where}: expected an object")
        for key, item in value.items():
            if key not in schema:
                fail(f"{where}.{key}: not a field of the LeaderWorkerSet API")
            check_against_schema(f"{where}.{key}", item, schema[key])


def check_leader_worker_set(where, lws):
    if lws["apiVersion"] != LWS_SCHEMA["apiVersion"]:
        fail(f"{where}: apiVersion {lws['apiVersion']} != {LWS_SCHEMA['apiVersion']}")
    check_against_schema(f"{where}.spec", lws.get("spec"), LWS_SCHEMA["spec"])
    for path in LWS_REQUIRED:
        node = lws
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            fail(f"{where}: {'.'.join(path)} is required")
    template = lws["spec"]["leaderWorkerTemplate"]
    if template.get("size", 1) < 1:
        fail(f"{where}: leaderWorkerTemplate.size must be at least 1")
    if template.get("restartPolicy") != "RecreateGroupOnPodRestart":
        fail(f"{where}: a tensor-parallel group must restart as one (RecreateGroupOnPodRestart)")


# ---------------------------------------------------------------------------------------------
def container_ports(container):
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def probe_port(where, probe, ports):
    handler = probe.get("grpc") or probe.get("httpGet") or probe.get("tcpSocket")
    port = handler["port"]
    if isinstance(port, str):
        if port not in ports:
            fail(f"{where}: probe port {port!r} is not a container port name")
        return ports[port]
    if port not in ports.values():
        fail(f"{where}: probe port {port} is not a container port")
    return port


def check_budget(where, probe):
    budget = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    if budget < STARTUP_BUDGET_SECONDS:
        fail(f"{where}: startupProbe allows {budget} s, less than the "
             f"{STARTUP_BUDGET_SECONDS} s a 70B load needs")


def check_worker_container(where, pod_spec, flags, health_service, gpu_overlay):
    """Returns (ranks per pod, the rank-0 gRPC port, metrics ports, worker flag values)."""
    container = pod_spec["containers"][0]
    ports = container_ports(container)
    command = container.get("command") or []
    args = container.get("args") or []
    launcher = bool(command) and os.path.basename(command[0]) == LAUNCHER
    probes = {kind: container.get(kind) for kind in ("startupProbe", "readinessProbe",
                                                      "livenessProbe")}
    for kind, probe in probes.items():
        if probe is None:
            fail(f"{where}: the worker has no {kind}")
    check_budget(where, probes["startupProbe"])
    if launcher:
        separator = args.index("--") if "--" in args else fail(f"{where}: {LAUNCHER} needs --")
        options = dict(zip(args[:separator:2], args[1:separator:2]))
        ranks = int(options["--ranks"])
        grpc_port = int(options["--grpc-port"])
        metrics_port = int(options["--metrics-port"])
        worker_args = args[separator + 1:]
        for added in LAUNCHER_FLAGS:
            if added not in flags:
                fail(f"{where}: {LAUNCHER} adds {added}, which serve worker does not accept")
        if worker_args[:2] != ["serve", "worker"]:
            fail(f"{where}: {LAUNCHER} must run 'serve worker', got {worker_args[:2]}")
        values = parse_flags(where, worker_args[2:], flags)
        for added in LAUNCHER_FLAGS:
            if added in values:
                fail(f"{where}: {added} is set per rank by {LAUNCHER}; leave it out")
        for i in range(ranks):
            if grpc_port + i not in ports.values() or metrics_port + i not in ports.values():
                fail(f"{where}: rank {i} needs containerPorts {grpc_port + i} and "
                     f"{metrics_port + i}")
        for kind, probe in probes.items():
            exec_command = (probe.get("exec") or {}).get("command")
            if not exec_command or os.path.basename(exec_command[0]) != LAUNCHER:
                fail(f"{where}: {kind} of a multi-rank pod must be '{LAUNCHER} --check'")
            check = dict(zip(exec_command[1::2], exec_command[2::2]))
            expected = "alive" if kind == "livenessProbe" else "ready"
            if check.get("--check") != expected or int(check.get("--ranks", -1)) != ranks or \
                    int(check.get("--metrics-port", -1)) != metrics_port:
                fail(f"{where}: {kind} must be --check {expected} --ranks {ranks} "
                     f"--metrics-port {metrics_port}, got {exec_command[1:]}")
    else:
        if args[:2] != ["serve", "worker"]:
            fail(f"{where}: worker args must start with 'serve worker', got {args[:2]}")
        values = parse_flags(where, args[2:], flags)
        ranks = 1
        grpc_port = port_of(values.get("--listen", [":0"])[0])
        metrics_port = port_of(values.get("--metrics-listen", [":0"])[0])
        if ports.get("grpc") != grpc_port:
            fail(f"{where}: worker --listen does not use containerPort grpc")
        if ports.get("metrics") != metrics_port:
            fail(f"{where}: worker --metrics-listen does not use containerPort metrics")
        for kind in ("startupProbe", "readinessProbe"):
            probe = probes[kind]
            if "grpc" not in probe or probe["grpc"].get("service") != health_service:
                fail(f"{where}: {kind} must ask the health service '{health_service}' (the "
                     "empty name is SERVING before the model is loaded)")
            if probe_port(f"{where} {kind}", probe, ports) != grpc_port:
                fail(f"{where}: {kind} does not probe the gRPC port")
        liveness = probes["livenessProbe"]
        if liveness.get("httpGet", {}).get("path") != "/healthz" or \
                probe_port(f"{where} livenessProbe", liveness, ports) != metrics_port:
            fail(f"{where}: livenessProbe must be /healthz on the metrics port")
    if ports.get("grpc") != grpc_port or ports.get("metrics") != metrics_port:
        fail(f"{where}: containerPorts grpc/metrics must be rank 0's {grpc_port}/{metrics_port}")

    gpus = int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
    device = values.get("--device", ["auto"])[0]
    if gpu_overlay:
        if device != "cuda":
            fail(f"{where}: a GPU overlay's workers must run --device=cuda")
        if gpus != ranks:
            fail(f"{where}: {ranks} ranks but nvidia.com/gpu limit {gpus} (one GPU per rank)")
        mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
        if not mounts.get("models", {}).get("readOnly"):
            fail(f"{where}: the models volume must be mounted readOnly")
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        if not volumes.get("models", {}).get("persistentVolumeClaim", {}).get("readOnly"):
            fail(f"{where}: the models claim must be readOnly")
        if "/dev/shm" not in [m["mountPath"] for m in mounts.values()]:
            fail(f"{where}: GPU ranks need a memory-backed /dev/shm")
    elif gpus:
        fail(f"{where}: GPUs requested outside a GPU overlay")
    return ranks, grpc_port, metrics_port, values


def check_overlay(overlay, flags_by_role, health_service):
    documents = render(overlay)
    where = overlay.name
    gpu_overlay = where.startswith("gpu")
    by_kind = {}
    for document in documents:
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    coordinator = by_kind.get("StatefulSet", {}).get("flatfleet-coordinator")
    workers = [d for d in by_kind.get("StatefulSet", {}).values()
               if d["metadata"]["name"] != "flatfleet-coordinator"]
    workers += list(by_kind.get("LeaderWorkerSet", {}).values())
    if coordinator is None or len(workers) != 1:
        fail(f"{where}: needs the coordinator StatefulSet and one worker StatefulSet or "
             f"LeaderWorkerSet, found {[w['metadata']['name'] for w in workers]}")
    worker = workers[0]
    if worker["kind"] == "LeaderWorkerSet":
        check_leader_worker_set(f"{where} LeaderWorkerSet", worker)
        template = worker["spec"]["leaderWorkerTemplate"]
        pod = template["workerTemplate"]
        if "leaderTemplate" in template:
            fail(f"{where}: leader and followers must run the same pod (no leaderTemplate)")
        pods = worker["spec"].get("replicas", 1) * template.get("size", 1)
    else:
        pod = worker["spec"]["template"]
        pods = worker["spec"].get("replicas", 1)
    ranks, grpc_port, metrics_port, worker_values = check_worker_container(
        f"{where} worker", pod["spec"], flags_by_role["worker"], health_service, gpu_overlay)

    # The coordinator.
    container = coordinator["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    if args[:2] != ["serve", "coordinator"]:
        fail(f"{where}: coordinator args must start with 'serve coordinator', got {args[:2]}")
    values = parse_flags(f"{where} coordinator", args[2:], flags_by_role["coordinator"])
    ports = container_ports(container)
    if port_of(values.get("--listen", [":0"])[0]) != ports["grpc"]:
        fail(f"{where}: coordinator --listen does not use containerPort grpc")
    if port_of(values.get("--metrics-listen", [":0"])[0]) != ports["metrics"]:
        fail(f"{where}: coordinator --metrics-listen does not use containerPort metrics")
    annotation = coordinator["spec"]["template"]["metadata"].get("annotations", {}).get(
        "prometheus.io/port")
    if annotation != str(ports["metrics"]):
        fail(f"{where}: coordinator prometheus.io/port {annotation} != its metrics port")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind not in container:
            fail(f"{where}: the coordinator has no {kind}")
        probe_port(f"{where} coordinator {kind}", container[kind], ports)
    check_budget(f"{where} coordinator", container["startupProbe"])
    if not values.get("--model"):
        fail(f"{where}: the coordinator has no --model")
    if values.get("--worker"):
        fail(f"{where}: list workers through --worker-dns, not --worker")

    # Discovery: --worker-dns names the headless Service over the worker pods.
    dns = values.get("--worker-dns", [])
    if len(dns) != 1:
        fail(f"{where}: the coordinator needs one --worker-dns, got {dns}")
    host, _, port = dns[0].rpartition(":")
    service = by_kind.get("Service", {}).get(host.split(".")[0])
    if service is None:
        fail(f"{where}: --worker-dns host {host} is not a Service of the overlay")
    spec = service["spec"]
    if spec.get("clusterIP") != "None" or not spec.get("publishNotReadyAddresses"):
        fail(f"{where}: Service {host} must be headless with publishNotReadyAddresses (workers "
             "turn Ready only after the coordinator had them load)")
    labels = pod.get("metadata", {}).get("labels", {})
    if any(labels.get(k) != v for k, v in spec["selector"].items()):
        fail(f"{where}: Service {host} does not select the worker pods")
    if int(port) != grpc_port:
        fail(f"{where}: --worker-dns port {port} != the workers' gRPC port {grpc_port}")
    per_host = int(values.get("--workers-per-host", ["1"])[0])
    if per_host != ranks:
        fail(f"{where}: --workers-per-host {per_host} != {ranks} ranks per worker pod")
    min_workers = int(values.get("--min-workers", ["1"])[0])
    if min_workers > pods * ranks:
        fail(f"{where}: --min-workers {min_workers} exceeds the {pods * ranks} ranks deployed")
    # The models the coordinator names must be where the workers mount them.
    model_path = values["--model"][0].partition("=")[2]
    if gpu_overlay:
        mount = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}["models"]
        if not model_path.startswith(mount["mountPath"] + "/"):
            fail(f"{where}: --model {model_path} is not under the models mount")
    print(f"ok: {where} ({len(documents)} objects, {pods} worker pods x {ranks} ranks, "
          f"{worker['kind']})")
    return documents


def check_monitoring(overlay, component):
    documents = render_with_component(overlay, component)
    pods = [d for d in documents if d["kind"] in ("StatefulSet", "LeaderWorkerSet")]
    worker_port_names, coordinator_service_ports = set(), set()
    for workload in pods:
        spec = workload["spec"]
        template = (spec["leaderWorkerTemplate"]["workerTemplate"]
                    if workload["kind"] == "LeaderWorkerSet" else spec["template"])
        if template["metadata"]["labels"].get("app.kubernetes.io/name") == "flatfleet-worker":
            for container in template["spec"]["containers"]:
                worker_port_names.update(container_ports(container))
    for service in (d for d in documents if d["kind"] == "Service"):
        if service["metadata"]["name"] == "flatfleet-coordinator":
            coordinator_service_ports = {p["name"] for p in service["spec"]["ports"]}
    for monitor in (d for d in documents if d["kind"] == "PodMonitor"):
        names = [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]]
        if "metrics" not in names:
            fail(f"{overlay.name}: PodMonitor does not scrape the metrics port")
        metrics_ports = {n for n in worker_port_names if n.startswith("metrics")}
        if not metrics_ports <= set(names):
            fail(f"{overlay.name}: PodMonitor misses worker ports {metrics_ports - set(names)}")
    for monitor in (d for d in documents if d["kind"] == "ServiceMonitor"):
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint["port"] not in coordinator_service_ports:
                fail(f"{overlay.name}: ServiceMonitor port {endpoint['port']} is not a port of "
                     "the coordinator Service")
    kinds = {d["kind"] for d in documents}
    for kind in ("PodMonitor", "ServiceMonitor", "PrometheusRule", "ConfigMap"):
        if kind not in kinds:
            fail(f"{overlay.name} + monitoring: no {kind}")


def check_images(source_dir):
    """The images build in stages and run unprivileged; the CUDA one builds on a devel base, runs
    on a runtime base and declares the model volume; the build context leaves build trees out."""
    container = source_dir / "deploy" / "container"
    for name in ("Dockerfile", "Dockerfile.cuda"):
        text = (container / name).read_text()
        stages = re.split(r"^FROM ", text, flags=re.M)[1:]
        if len(stages) < 2:
            fail(f"{name}: expected a multi-stage build")
        final = stages[-1]
        users = re.findall(r"^USER (\S+)", final, flags=re.M)
        if not users or users[-1] in ("root", "0"):
            fail(f"{name}: the final stage must switch to a non-root USER")
        for copied in re.findall(r"^COPY (?!--from)(\S+) ", final, flags=re.M):
            if not (source_dir / copied).exists():
                fail(f"{name}: COPY of {copied}, which the source tree lacks")
        if name == "Dockerfile.cuda":
            if "-devel-" not in stages[0].split()[0] or "-runtime-" not in final.split()[0]:
                fail(f"{name}: build on a CUDA devel image and run on a CUDA runtime image")
            if not re.search(r'^VOLUME \["/models"\]', final, flags=re.M):
                fail(f"{name}: the final stage must declare the /models volume")
    ignored = (source_dir / ".dockerignore").read_text().split()
    for pattern in ("build", "build-*", ".git", "**/*.safetensors"):
        if pattern not in ignored:
            fail(f".dockerignore: {pattern} must stay out of the build context")
    print("ok: container images (multi-stage, non-root, CUDA devel -> runtime, .dockerignore)")


# ---------------------------------------------------------------------------------------------
def exported_metric_names(source_dir):
    names = set()
    for path in list(source_dir.glob("coordinator/**/*.cc")) + list(source_dir.glob("worker/**/*.cc")):
        names.update(re.findall(r'"(flatfleet_[a-z_]+)"', path.read_text()))
    return names


def check_expression_names(where, expression, known, recorded):
    for name in re.findall(r"\b(flatfleet_[a-z_]+)", expression):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in known and base not in known:
            fail(f"{where} uses {name}, which flatfleet does not export")
    for name in re.findall(r"\b(flatfleet:[a-z0-9_:]+)", expression):
        if name not in recorded:
            fail(f"{where} uses {name}, which no recording rule defines")


def prometheusrule_text(rules_text):
    body = rules_text[rules_text.index("groups:\n") + len("groups:\n"):]
    return ("# Generated from deploy/prometheus/flatfleet-rules.yml (the promtool-checked source) "
            "by\n#   tests/deploy/check_deploy.py --write-prometheusrule SOURCE_DIR\n"
            "# The deploy test fails when the two differ.\n"
            "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n"
            "  name: flatfleet\nspec:\n  groups:\n" +
            "".join(("  " + line if line.strip() else line)
                    for line in body.splitlines(True)))


def check_prometheus(source_dir, component, gpu_metrics_ports):
    prometheus_dir = source_dir / "deploy" / "prometheus"
    rules_path = prometheus_dir / "flatfleet-rules.yml"
    run(["promtool", "check", "rules", str(rules_path)])
    configs = sorted(prometheus_dir.glob("prometheus*.yml"))
    for config in configs:
        run(["promtool", "check", "config", str(config)])
    known = exported_metric_names(source_dir)
    rules = yaml.safe_load(rules_path.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    for group in rules["groups"]:
        for rule in group["rules"]:
            check_expression_names(f"rule {rule.get('alert') or rule.get('record')}",
                                   rule["expr"], known, recorded)
    for alert in ("FlatfleetBatchStalled", "FlatfleetWorkerGroupFailed",
                  "FlatfleetKvCacheExhausted"):
        if alert not in {r.get("alert") for g in rules["groups"] for r in g["rules"]}:
            fail(f"rules: no {alert} alert")
    if (component / "prometheusrule.yaml").read_text() != prometheusrule_text(
            rules_path.read_text()):
        fail("the PrometheusRule differs from flatfleet-rules.yml: run "
             "tests/deploy/check_deploy.py --write-prometheusrule SOURCE_DIR")
    gpu_config = yaml.safe_load((prometheus_dir / "prometheus-gpu.yml").read_text())
    worker_job = [j for j in gpu_config["scrape_configs"] if j["job_name"] == "flatfleet-worker"]
    scraped = sorted(c["port"] for c in worker_job[0]["dns_sd_configs"])
    if scraped != sorted(gpu_metrics_ports):
        fail(f"prometheus-gpu.yml scrapes ports {scraped}, the GPU ranks serve "
             f"{sorted(gpu_metrics_ports)}")

    dashboard = json.loads((component / "flatfleet-dashboard.json").read_text())
    queries = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            check_expression_names(f"dashboard panel '{panel['title']}'", target["expr"], known,
                                   recorded)
            queries += 1
    print(f"ok: prometheus ({len(configs)} configs), rules, PrometheusRule, dashboard "
          f"({queries} queries) against {len(known)} exported metric names")


def main():
    if sys.argv[1] == "--write-prometheusrule":
        source_dir = pathlib.Path(sys.argv[2])
        rules = (source_dir / "deploy" / "prometheus" / "flatfleet-rules.yml").read_text()
        (source_dir / "deploy" / "k8s" / "components" / "monitoring" /
         "prometheusrule.yaml").write_text(prometheusrule_text(rules))
        return 0
    source_dir = pathlib.Path(sys.argv[1]).resolve()
    binary = sys.argv[2]
    for tool in ("kubectl", "yamllint", "promtool"):
        if shutil.which(tool) is None:
            print(f"skipped: {tool} not installed")
            return SKIP
    run(["yamllint", "-s", "-c", str(source_dir / "deploy" / ".yamllint"),
         str(source_dir / "deploy")])
    flags = {role: accepted_flags(binary, role) for role in ("coordinator", "worker")}
    health_service = worker_health_service_name(source_dir)
    k8s = source_dir / "deploy" / "k8s"
    component = k8s / "components" / "monitoring"
    overlays = sorted(p for p in (k8s / "overlays").iterdir() if p.is_dir())
    if not any(o.name.startswith("gpu") for o in overlays):
        fail("no GPU overlay")
    gpu_metrics_ports = set()
    for overlay in overlays:
        documents = check_overlay(overlay, flags, health_service)
        check_monitoring(overlay, component)
        if overlay.name == "gpu":
            worker = next(d for d in documents if d["kind"] == "StatefulSet" and
                          d["metadata"]["name"] == "flatfleet-worker")
            gpu_metrics_ports = {
                p["containerPort"] for p in worker["spec"]["template"]["spec"]["containers"][0]
                ["ports"] if p["name"].startswith("metrics")}
    check_prometheus(source_dir, component, gpu_metrics_ports)
    check_images(source_dir)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        fail(f"{' '.join(error.cmd)} exited {error.returncode}:\n{error.stdout}\n{error.stderr}")
