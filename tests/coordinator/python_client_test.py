#!/usr/bin/python3
"""A Python gRPC client against a real coordinator and worker, plus the CLI client commands.

Debian ships grpcio but not grpc_tools, so the messages come from a descriptor set made by
protoc at test time, and the calls are generic (method path + serializers).

usage: python_client_test.py FLATFLEET_BINARY PROTOC PROTO_ROOT
"""
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

DEADLINE_SECONDS = 120


def load_messages(protoc, proto_root, workdir):
    descriptor_path = os.path.join(workdir, "flatfleet.pb")
    subprocess.run([protoc, f"--proto_path={proto_root}", "--include_imports",
                    f"--descriptor_set_out={descriptor_path}", "flatfleet/v1/batch.proto"],
                   check=True, timeout=60)
    files = descriptor_pb2.FileDescriptorSet()
    with open(descriptor_path, "rb") as f:
        files.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    factory = message_factory.MessageFactory(pool)

    def message(name):
        return factory.GetPrototype(pool.FindMessageTypeByName(f"flatfleet.v1.{name}"))

    return message, pool


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
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def main():
    binary, protoc, proto_root = sys.argv[1:4]
    workdir = tempfile.mkdtemp(prefix="flatfleet-pytest-")
    message, pool = load_messages(protoc, proto_root, workdir)
    CreateBatchRequest = message("CreateBatchRequest")
    CreateBatchResponse = message("CreateBatchResponse")
    GetBatchRequest = message("GetBatchRequest")
    Batch = message("Batch")
    StreamResultsRequest = message("StreamResultsRequest")
    BatchResult = message("BatchResult")
    states = pool.FindEnumTypeByName("flatfleet.v1.BatchState")
    completed = states.values_by_name["BATCH_STATE_COMPLETED"].number

    processes = []
    log = open(os.path.join(workdir, "processes.log"), "wb")
    try:
        worker, worker_address = start(binary, ["serve", "worker", "--listen", "127.0.0.1:0"], log)
        processes.append(worker)
        coordinator, address = start(binary, [
            "serve", "coordinator", "--listen", "127.0.0.1:0", "--db",
            os.path.join(workdir, "jobs.db"), "--worker", worker_address, "--model",
            "demo=builtin:demo"], log)
        processes.insert(0, coordinator)

        channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(channel).result(timeout=30)
        service = "/flatfleet.v1.BatchService/"
        create = channel.stream_unary(service + "CreateBatch",
                                      request_serializer=CreateBatchRequest.SerializeToString,
                                      response_deserializer=CreateBatchResponse.FromString)
        get = channel.unary_unary(service + "GetBatch",
                                  request_serializer=GetBatchRequest.SerializeToString,
                                  response_deserializer=Batch.FromString)
        stream = channel.unary_stream(service + "StreamResults",
                                      request_serializer=StreamResultsRequest.SerializeToString,
                                      response_deserializer=BatchResult.FromString)

        lines = [json.dumps({"custom_id": f"py{i}",
                             "body": {"prompt": f"Python request {i}", "max_tokens": 4}})
                 for i in range(5)]
        first = CreateBatchRequest()
        first.options.model = "demo"
        upload = CreateBatchRequest()
        upload.lines.lines.extend(line.encode() for line in lines)  # bytes: any line reaches the server
        end = CreateBatchRequest()
        end.end.line_count = len(lines)
        response = create(iter([first, upload, end]), timeout=30)
        assert len(response.errors) == 0, response
        batch_id = response.batch.id
        assert batch_id.startswith("batch_"), batch_id

        deadline = time.time() + DEADLINE_SECONDS
        while True:
            batch = get(GetBatchRequest(batch_id=batch_id), timeout=10)
            if batch.state == completed:
                break
            assert time.time() < deadline, f"batch not completed: {batch}"
            time.sleep(0.1)
        assert batch.request_counts.total == 5 and batch.request_counts.completed == 5, batch

        results = list(stream(StreamResultsRequest(batch_id=batch_id, start_sequence=0),
                              timeout=30))
        assert [r.sequence for r in results] == list(range(5)), results
        assert sorted(r.custom_id for r in results) == [f"py{i}" for i in range(5)]
        assert all(r.HasField("response") and r.response.usage.completion_tokens > 0
                   for r in results), results
        resumed = list(stream(StreamResultsRequest(batch_id=batch_id, start_sequence=3),
                              timeout=30))
        assert [r.custom_id for r in resumed] == [r.custom_id for r in results[3:]]

        # The CLI clients against the same coordinator.
        cli = [binary]
        status = subprocess.run(cli + ["status", batch_id, "--coordinator", address],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "completed" in status.stdout, status
        output = os.path.join(workdir, "output.jsonl")
        got = subprocess.run(cli + ["results", batch_id, "-o", output, "--coordinator", address],
                             capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got
        with open(output) as f:
            output_lines = [json.loads(line) for line in f]
        assert [line["custom_id"] for line in output_lines] == [r.custom_id for r in results]
        assert all(line["response"]["status_code"] == 200 and line["error"] is None
                   for line in output_lines)

        bad_input = os.path.join(workdir, "bad.jsonl")
        with open(bad_input, "w") as f:
            f.write(lines[0] + "\n" + '{"custom_id": "x", "body": {"prompt": 5}}' + "\n")
        mixed = subprocess.run(cli + ["submit", bad_input, "--model", "demo",
                                      "--coordinator", address],
                               capture_output=True, text=True, timeout=60)
        # The invalid line is reported and becomes a failed result; the valid one runs.
        assert mixed.returncode == 0 and ":2: body.prompt" in mixed.stderr, mixed
        assert mixed.stdout.startswith("batch_"), mixed
        mixed_results = subprocess.run(cli + ["results", mixed.stdout.strip(), "--follow",
                                              "--coordinator", address],
                                       capture_output=True, text=True, timeout=DEADLINE_SECONDS)
        assert mixed_results.returncode == 0, mixed_results
        mixed_lines = [json.loads(line) for line in mixed_results.stdout.splitlines()]
        assert [line["custom_id"] for line in mixed_lines] == ["x", "py0"], mixed_lines
        # OpenAI's shape for a request that failed: a 400 response whose body is an error.
        assert mixed_lines[0]["error"] is None, mixed_lines
        assert mixed_lines[0]["response"]["status_code"] == 400, mixed_lines
        invalid = mixed_lines[0]["response"]["body"]["error"]
        assert invalid["code"] == "invalid_request", mixed_lines
        assert invalid["message"].startswith("line 2: body.prompt: "), mixed_lines
        assert mixed_lines[1]["response"]["status_code"] == 200, mixed_lines
        mixed_status = subprocess.run(cli + ["status", mixed.stdout.strip(),
                                             "--coordinator", address],
                                      capture_output=True, text=True, timeout=60)
        assert "1 completed, 1 failed (1 invalid lines)" in mixed_status.stdout, mixed_status
        all_bad = os.path.join(workdir, "all_bad.jsonl")
        with open(all_bad, "w") as f:
            f.write('{"custom_id": "y"}\n')
        failed = subprocess.run(cli + ["submit", all_bad, "--model", "demo",
                                       "--coordinator", address],
                                capture_output=True, text=True, timeout=60)
        assert failed.returncode == 1 and "all 1 request lines are invalid" in failed.stderr, \
            failed
        good_input = os.path.join(workdir, "good.jsonl")
        with open(good_input, "w") as f:
            f.write("\n".join(lines) + "\n")
        submitted = subprocess.run(cli + ["submit", good_input, "--model", "demo",
                                          "--coordinator", address],
                                   capture_output=True, text=True, timeout=60)
        assert submitted.returncode == 0 and submitted.stdout.startswith("batch_"), submitted
        second = submitted.stdout.strip()
        followed = subprocess.run(cli + ["results", second, "--follow", "--coordinator", address],
                                  capture_output=True, text=True, timeout=DEADLINE_SECONDS)
        assert followed.returncode == 0 and len(followed.stdout.splitlines()) == 5, followed
        cancelled = subprocess.run(cli + ["cancel", second, "--coordinator", address],
                                   capture_output=True, text=True, timeout=60)
        assert cancelled.returncode == 1 and "CancelBatch" in cancelled.stderr, cancelled
        channel.close()
    finally:
        for process in processes:
            stop(process)
        log.close()
    for process in processes:
        assert process.returncode == 0, f"exit {process.returncode}; see {log.name}"
    print("python client test passed")


if __name__ == "__main__":
    main()
