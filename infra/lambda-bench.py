#!/usr/bin/env python3
"""Init time and package size of patchflow's Lambda functions (`make bench`).

A local Lambda Runtime API (GET /2018-06-01/runtime/invocation/next, POST .../response,
.../error, /runtime/init/error) on 127.0.0.1; each real function binary is started with the
environment the SAM template gives it (dummy credentials, made-up queue URLs, table and bucket,
PATCHFLOW_CONNECTORS=connectwise over a connectors file, the secrets of the systems it talks to),
and its init is the time from spawn to its first `next` request. The same server answers
Secrets Manager's GetSecretValue (AWS_ENDPOINT_URL points at it), so init includes each secret
read at start, over loopback (in AWS each is a real call: add its latency). The process is then killed (no event is fed: nothing is sent to AWS).
Prints per function: binary size, zipped size (deflate, as `make package` zips it), and the
init median and p90 over N runs.

    python3 infra/lambda-bench.py --bin-dir target/lambda-bench/release --runs 20 FUNCTION...
"""

import argparse
import http.server
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

SENDS = {
    "inventory-sync": ([], ["approval"]),
    "approval-eval": (["approval"], ["approval"]),
    "ring-promotion": (["rollout"], ["approval", "rollout", "schedule", "failure", "evidence"]),
    "reboot-scheduler": (["schedule"], ["failure"]),
    "failure-escalation": (["failure"], []),
    "evidence-archiver": (["evidence"], []),
}
TALKS = {
    "inventory-sync": ["RMM"],
    "approval-eval": ["RMM", "PSA"],
    "ring-promotion": ["RMM", "PSA"],
    "reboot-scheduler": ["RMM", "PSA"],
    "failure-escalation": ["RMM", "PSA", "PAGER"],
    "evidence-archiver": ["RMM", "PSA", "PAGER"],
}
SECRETS = {
    "rmm": {"username": "bench", "password": "bench", "client_id": "bench"},
    "psa": {"company": "bench", "public_key": "bench", "private_key": "bench",
            "client_id": "bench"},
}
CONNECTORS = """[automate]
base_url = "https://rmm.msp.example"
[manage]
base_url = "https://na.myconnectwise.net/v4_6_release/apis/3.0"
board = "Patching"
[pager]
kind = "sns"
"""


class Runtime(http.server.BaseHTTPRequestHandler):
    """The Runtime API: records when `next` is first asked for, then holds it open."""

    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes: with Nagle's algorithm the body of a second
    # answer on a kept-alive connection waits for the client's delayed ACK (40 ms on Linux), a
    # stall of this emulator that no AWS endpoint has.
    disable_nagle_algorithm = True
    first_next = None
    init_error = None
    event = threading.Event()

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/2018-06-01/runtime/invocation/next":
            if Runtime.first_next is None:
                Runtime.first_next = time.monotonic()
            Runtime.event.set()
            # No event: the benchmark ends the process here. Hold the request open.
            time.sleep(5)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.headers.get("X-Amz-Target") == "secretsmanager.GetSecretValue":
            arn = json.loads(body)["SecretId"]
            kind = arn.rsplit(":", 1)[-1]
            out = json.dumps({"ARN": arn, "Name": kind, "VersionId": "v1",
                              "SecretString": json.dumps(SECRETS[kind])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        if self.path.endswith("/init/error") or self.path.endswith("/error"):
            Runtime.init_error = body.decode(errors="replace")
            Runtime.event.set()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def environment(name, port, connectors_file):
    consumes, sends = SENDS[name]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": f"patchflow-{name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "PATCHFLOW_STATE_TABLE": "patchflow-state",
        "PATCHFLOW_EVIDENCE_BUCKET": "patchflow-evidence",
        "PATCHFLOW_CONNECTORS": "connectwise",
        "PATCHFLOW_CONNECTORS_CONFIG": connectors_file,
        "PATCHFLOW_PAGER_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:pages",
        "PATCHFLOW_INVENTORY_PATH": "/var/task/inventory.json",
        "PATCHFLOW_CATALOG_PATH": "/var/task/catalog-{cycle}.json",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    for system in TALKS[name]:
        if system in ("RMM", "PSA"):
            env[f"PATCHFLOW_{system}_SECRET_ARN"] = (
                f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{system.lower()}"
            )
    for stage in set(consumes) | set(sends):
        env[f"PATCHFLOW_{stage.upper()}_QUEUE_URL"] = (
            f"https://sqs.us-east-1.amazonaws.com/123456789012/patchflow-{stage}"
        )
    for stage in consumes:
        env[f"PATCHFLOW_{stage.upper()}_DLQ_URL"] = (
            f"https://sqs.us-east-1.amazonaws.com/123456789012/patchflow-{stage}-dlq"
        )
    return env


def zipped_size(path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, "bootstrap")
    return len(buf.getvalue())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--simulation", action="store_true",
                    help="start with PATCHFLOW_CONNECTORS=simulation (a simulation build)")
    ap.add_argument("functions", nargs="+")
    args = ap.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    server.daemon_threads = True
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    with tempfile.TemporaryDirectory() as tmp:
        connectors_file = os.path.join(tmp, "connectors.toml")
        with open(connectors_file, "w") as f:
            f.write(CONNECTORS)
        print(f"{'function':<20} {'binary':>9} {'zipped':>9} {'init median':>12} {'p90':>8}")
        failed = False
        for name in args.functions:
            binary = os.path.join(args.bin_dir, name)
            env = environment(name, port, connectors_file)
            if args.simulation:
                env["PATCHFLOW_CONNECTORS"] = "simulation"
            times = []
            for _ in range(args.runs):
                Runtime.first_next = None
                Runtime.init_error = None
                Runtime.event.clear()
                start = time.monotonic()
                proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
                got = Runtime.event.wait(10)
                proc.kill()
                _, err = proc.communicate()
                if not got or Runtime.first_next is None:
                    print(f"{name}: no `next` request (init error: {Runtime.init_error}; "
                          f"stderr: {err.decode(errors='replace')[-600:]})", file=sys.stderr)
                    failed = True
                    break
                times.append((Runtime.first_next - start) * 1000)
            if not times:
                continue
            times.sort()
            p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
            print(f"{name:<20} {os.path.getsize(binary) / 1e6:>7.1f}MB "
                  f"{zipped_size(binary) / 1e6:>7.1f}MB {statistics.median(times):>9.1f} ms "
                  f"{p90:>5.1f} ms")
        server.shutdown()
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
