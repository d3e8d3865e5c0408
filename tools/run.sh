#!/usr/bin/env bash
# `make run CONFIG=path/to/config.yaml [LISTEN=HOST:PORT]`: builds, then runs
# the `modelplane` binary (manager and proxy in one process) on the config
# in the foreground until Ctrl-C, which stops every model it started.
#
#   tools/run.sh CONFIG [LISTEN]     # LISTEN default 127.0.0.1:8080
#
# With MODELPLANE_BIN set (a tree holding cmd/modelplane), nothing is built.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:?usage: tools/run.sh CONFIG [LISTEN]}"
listen="${2:-127.0.0.1:8080}"
if [[ ! -f "$config" ]]; then
  echo "run: no config file $config" >&2
  exit 2
fi
if [[ -z "${MODELPLANE_BIN:-}" ]]; then
  "${BAZEL:-bazel}" build //cmd:modelplane //tools/fake_upstream
  MODELPLANE_BIN="$PWD/bazel-bin"
fi
export MODELPLANE_BIN  # examples/demo.yaml finds fake_upstream with it.
echo "modelplane on $config: web UI http://$listen/ui/, OpenAI API http://$listen/v1 (Ctrl-C stops)"
exec "$MODELPLANE_BIN/cmd/modelplane" --config "$config" --listen "$listen" --access-log
