#!/usr/bin/env bash
# Runs a command with moto's AWS API server on a free loopback port, the way `make test` runs
# the tests: installs moto into .venv if missing, starts it, exports AWS_ENDPOINT_URL and dummy
# credentials, runs the command, and stops the server however the command ends.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
log="$root/target/moto.log"
mkdir -p "$root/target"

if ! "$venv/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
  echo "with-moto: installing moto into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/moto-requirements.txt"
fi

port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# One request at a time: see tests/moto-server.py.
"$venv/bin/python" "$root/tests/moto-server.py" 127.0.0.1 "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true' EXIT

ready=""
for _ in $(seq 1 100); do
  if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" >/dev/null 2>&1; then
    ready=yes
    break
  fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "with-moto: moto exited; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "with-moto: moto did not answer on 127.0.0.1:$port; see $log" >&2; exit 1; }
echo "with-moto: moto on 127.0.0.1:$port" >&2

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"

# Opt-in: PATCHFLOW_COUNTING_PROXY=1 puts tests/counting-proxy.py in front of moto (the AWS cost
# bench reads its counts) and points the SDK at it.
if [ "${PATCHFLOW_COUNTING_PROXY:-}" = 1 ]; then
  proxy_port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$venv/bin/python" "$root/tests/counting-proxy.py" "$proxy_port" "$AWS_ENDPOINT_URL" >"$root/target/counting-proxy.log" 2>&1 &
  proxy_pid=$!
  trap 'kill "$proxy_pid" "$moto_pid" 2>/dev/null || true; wait "$proxy_pid" "$moto_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do
    "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$proxy_port/__counts', timeout=1)" >/dev/null 2>&1 && break
    kill -0 "$proxy_pid" 2>/dev/null || { echo "with-moto: the counting proxy exited; see target/counting-proxy.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "with-moto: counting proxy on 127.0.0.1:$proxy_port" >&2
  export AWS_ENDPOINT_URL="http://127.0.0.1:$proxy_port" PATCHFLOW_COUNTING_PROXY_URL="http://127.0.0.1:$proxy_port"
fi
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export PATCHFLOW_S3_FORCE_PATH_STYLE=true
"$@"
