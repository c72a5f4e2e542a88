#!/usr/bin/python3
"""Transport security end to end through real `flatfleet` processes.

A worker requires mutual TLS and the cluster secret; a coordinator serves its API over TLS with
bearer tokens and reaches the worker with its client certificate and the secret. The CLI and a
Python gRPC client then check what is accepted and what is refused. Certificates are made at
test time by make_test_certs.sh (openssl).

usage: security_e2e_test.py FLATFLEET_BINARY MAKE_TEST_CERTS_SCRIPT
"""
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile

import grpc

TIMEOUT_SECONDS = 120
SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}


def start(binary, args, log):
    process = subprocess.Popen([binary] + args, stdout=subprocess.PIPE, stderr=log,
                               start_new_session=True)
    ready, _, _ = select.select([process.stdout], [], [], 60)
    assert ready, f"{args[:2]} did not print its address in time"
    line = process.stdout.readline().decode().strip()
    assert line.startswith("listening on "), line
    return process, line[len("listening on "):]


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


def raw_call(channel, method, metadata=None):
    """A unary call with an empty request, returning (status code, response bytes)."""
    call = channel.unary_unary(method, request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    try:
        return grpc.StatusCode.OK, call(b"", timeout=20, metadata=metadata)
    except grpc.RpcError as error:
        return error.code(), error.details()


def main():
    binary, make_certs = sys.argv[1:3]
    workdir = tempfile.mkdtemp(prefix="flatfleet-security-")
    certs = os.path.join(workdir, "certs")
    subprocess.run([make_certs, certs], check=True, timeout=120, capture_output=True)
    cert = lambda name: os.path.join(certs, name)  # noqa: E731
    secret = secrets.token_urlsafe(32)
    token = secrets.token_urlsafe(24)
    secret_file = write(os.path.join(workdir, "cluster-secret"), secret + "\n")
    token_file = write(os.path.join(workdir, "api-tokens"),
                       f"# accepted API tokens\n{secrets.token_urlsafe(24)}\n{token}\n")
    client_token_file = write(os.path.join(workdir, "client-token"), token + "\n")
    cluster_flags = ["--cluster-tls-ca", cert("ca.pem"), "--cluster-secret-file", secret_file]

    processes = []
    log = open(os.path.join(workdir, "processes.log"), "wb")
    try:
        # Unreadable or mismatched TLS files stop a server at once, naming the file.
        bad = subprocess.run([binary, "serve", "worker", "--cluster-tls-cert", cert("server.pem"),
                              "--cluster-tls-key", cert("client.key")] + cluster_flags,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and cert("client.key") in bad.stderr \
            and "does not match" in bad.stderr, bad
        bad = subprocess.run([binary, "serve", "coordinator", "--db",
                              os.path.join(workdir, "unused.db"), "--worker", "127.0.0.1:1",
                              "--model", "demo=builtin:demo", "--tls-cert",
                              os.path.join(workdir, "missing.pem"), "--tls-key",
                              cert("server.key")], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "cannot read --tls-cert" in bad.stderr \
            and "missing.pem" in bad.stderr, bad

        worker, worker_address = start(binary, [
            "serve", "worker", "--listen", "127.0.0.1:0", "--cluster-tls-cert",
            cert("server.pem"), "--cluster-tls-key", cert("server.key")] + cluster_flags, log)
        processes.append(worker)

        # The worker: no client certificate, no connection; a certificate but no or a wrong
        # secret, UNAUTHENTICATED; both, served. Its health check needs no secret.
        ca = read(cert("ca.pem"))
        worker_health = "/flatfleet.v1.WorkerService/Health"
        anonymous = grpc.secure_channel(worker_address, grpc.ssl_channel_credentials(ca))
        code, _ = raw_call(anonymous, worker_health, [("x-flatfleet-cluster-secret", secret)])
        assert code == grpc.StatusCode.UNAVAILABLE, code
        anonymous.close()
        mutual = grpc.secure_channel(worker_address, grpc.ssl_channel_credentials(
            ca, read(cert("client.key")), read(cert("client.pem"))))
        code, details = raw_call(mutual, worker_health)
        assert code == grpc.StatusCode.UNAUTHENTICATED and "cluster-secret" in details, details
        code, _ = raw_call(mutual, worker_health,
                           [("x-flatfleet-cluster-secret", secrets.token_urlsafe(32))])
        assert code == grpc.StatusCode.UNAUTHENTICATED, code
        code, _ = raw_call(mutual, worker_health, [("x-flatfleet-cluster-secret", secret)])
        assert code == grpc.StatusCode.OK, code
        code, response = raw_call(mutual, "/grpc.health.v1.Health/Check")
        assert code == grpc.StatusCode.OK and response == SERVING, (code, response)
        mutual.close()

        coordinator, address = start(binary, [
            "serve", "coordinator", "--listen", "127.0.0.1:0", "--db",
            os.path.join(workdir, "jobs.db"), "--worker", worker_address, "--model",
            "demo=builtin:demo", "--tls-cert", cert("server.pem"), "--tls-key",
            cert("server.key"), "--api-token-file", token_file, "--cluster-tls-cert",
            cert("client.pem"), "--cluster-tls-key", cert("client.key")] + cluster_flags, log)
        processes.insert(0, coordinator)

        # The CLI over TLS with the token (from the environment, then from a file): a batch
        # runs through the coordinator's mutual-TLS, secret-carrying link to the worker.
        lines = [json.dumps({"custom_id": f"s{i}",
                             "body": {"prompt": f"secure request {i}", "max_tokens": 3}})
                 for i in range(4)]
        batch_file = write(os.path.join(workdir, "batch.jsonl"), "\n".join(lines) + "\n")
        tls = ["--coordinator", address, "--tls-ca", cert("ca.pem")]
        environment = dict(os.environ, FLATFLEET_API_TOKEN=token)
        submitted = subprocess.run([binary, "submit", batch_file, "--model", "demo"] + tls,
                                   capture_output=True, text=True, timeout=60, env=environment)
        assert submitted.returncode == 0 and submitted.stdout.startswith("batch_"), submitted
        batch_id = submitted.stdout.strip()
        followed = subprocess.run([binary, "results", batch_id, "--follow", "--api-token-file",
                                   client_token_file] + tls, capture_output=True, text=True,
                                  timeout=TIMEOUT_SECONDS)
        assert followed.returncode == 0, followed
        results = [json.loads(line) for line in followed.stdout.splitlines()]
        assert sorted(r["custom_id"] for r in results) == [f"s{i}" for i in range(4)], results
        assert all(r["response"]["status_code"] == 200 for r in results), results

        # Refusals, each with a clear message.
        no_token = subprocess.run([binary, "status", batch_id] + tls, capture_output=True,
                                  text=True, timeout=60,
                                  env={k: v for k, v in os.environ.items()
                                       if k != "FLATFLEET_API_TOKEN"})
        assert no_token.returncode == 1 and "missing credentials" in no_token.stderr, no_token
        wrong_token = subprocess.run([binary, "status", batch_id] + tls, capture_output=True,
                                     text=True, timeout=60,
                                     env=dict(os.environ, FLATFLEET_API_TOKEN="not-the-token"))
        assert wrong_token.returncode == 1 and "invalid credentials" in wrong_token.stderr, \
            wrong_token
        wrong_ca = subprocess.run([binary, "status", batch_id, "--coordinator", address,
                                   "--tls-ca", cert("other-ca.pem")], capture_output=True,
                                  text=True, timeout=60, env=environment)
        assert wrong_ca.returncode == 1 and "--tls-ca" in wrong_ca.stderr, wrong_ca
        status = subprocess.run([binary, "status", batch_id, "--tls-server-name",
                                 "coordinator.test"] + tls, capture_output=True, text=True,
                                timeout=60, env=environment)
        assert status.returncode == 0 and "completed" in status.stdout, status

        # A Python client: the token as call metadata; health without any token.
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca))
        code, response = raw_call(channel, "/grpc.health.v1.Health/Check")
        assert code == grpc.StatusCode.OK and response == SERVING, (code, response)
        get = "/flatfleet.v1.BatchService/GetBatch"
        code, details = raw_call(channel, get)
        assert code == grpc.StatusCode.UNAUTHENTICATED and "missing credentials" in details, \
            details
        code, _ = raw_call(channel, get, [("authorization", f"Bearer {token}")])
        # Authenticated: the handler answers (an empty id is simply not found).
        assert code == grpc.StatusCode.NOT_FOUND, code
        channel.close()
    finally:
        for process in processes:
            stop(process)
        log.close()
    for process in processes:
        assert process.returncode == 0, f"exit {process.returncode}; see {log.name}"
    print("security end-to-end test passed")


if __name__ == "__main__":
    main()
