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
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export PATCHFLOW_S3_FORCE_PATH_STYLE=true
"$@"
