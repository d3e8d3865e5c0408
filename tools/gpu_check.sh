#!/bin/bash
# GPU memory scheduling on a real GPU (docs/gpu.md): three models that each
# take a share of GPU 0 with PyTorch, two of which fit together, swapped by
# memory alone (no groups). Prints the footprints measured against what was
# allocated, the swap times (which include the wait for the driver to give
# a stopped model's memory back), each wait for that memory, and whether
# any start ran out of memory.
#
#   tools/gpu_check.sh            # on a machine with an NVIDIA GPU, PyTorch
#                                 # and a built modelmanager and mpctl
#
# MODELMANAGER and MPCTL name the binaries (default: bazel-bin's); PYTHON the
# interpreter with torch (default python3); SHARE the fraction of the GPU
# each model takes (default 0.35).
set -euo pipefail
cd "$(dirname "$0")/.."
MODELMANAGER=${MODELMANAGER:-bazel-bin/server/modelmanager}
MPCTL=${MPCTL:-bazel-bin/client/mpctl}
PYTHON=${PYTHON:-python3}
SHARE=${SHARE:-0.35}
for b in "$MODELMANAGER" "$MPCTL"; do
  [ -x "$b" ] || { echo "gpu_check: $b is not built (bazel build -c opt //server:modelmanager //client:mpctl)" >&2; exit 2; }
done
"$PYTHON" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null ||
  { echo "gpu_check: $PYTHON has no PyTorch with CUDA" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i 0

total_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i 0)
gib=$(awk -v t="$total_mib" -v s="$SHARE" 'BEGIN { printf "%.1f", t * s / 1024 }')
dir=$(mktemp -d)
mm=""
trap '[ -n "$mm" ] && kill "$mm" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
sock="$dir/mm.sock"
model="$(pwd)/tools/gpu_check_model.py"
{
  echo "models:"
  for m in a b c; do
    echo "  $m:"
    echo "    cmd: $PYTHON $model --port \${PORT} --gib $gib"
    echo "    resources: {gpus: [0]}"
    echo "    healthCheckTimeout: 120"
  done
} > "$dir/config.yaml"
"$MODELMANAGER" --config "$dir/config.yaml" --listen "unix:$sock" --log-level info \
  2> "$dir/manager.log" &
mm=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "gpu_check: the manager did not start:" >&2; cat "$dir/manager.log" >&2; exit 1; }
mp() { "$MPCTL" --manager "unix:$sock" "$@"; }

echo "each model takes $gib GiB of $((total_mib / 1024)) GiB; two fit, three do not"
swap() {
  local t0 t1
  t0=$(date +%s.%N)
  mp start "$1" > /dev/null
  t1=$(date +%s.%N)
  awk -v m="$1" -v a="$t0" -v b="$t1" 'BEGIN { printf "  start %s: %.2f s\n", m, b - a }'
}
# The first start of each is measured alone (no footprint known yet).
for m in a b c; do swap "$m"; done
sleep 2  # A poll or two: the peaks are sampled every second.
echo "footprints (allocated $gib GiB each, plus the CUDA context):"
# mpctl --json prints the proto's field names (snake_case); a field at its
# zero value is left out.
mp --json ls | "$PYTHON" -c '
import json, sys
gib = float(sys.argv[1])
for line in sys.stdin:
    r = json.loads(line)
    for m in r.get("models", []):
        g = m.get("gpu_memory", {})
        measured = int(g.get("measured_bytes", 0)) / 2**30
        print("  %s: measured %.2f GiB (allocated %.2f: %+.2f GiB of CUDA context and the rest), charged %.2f GiB"
              % (m["id"], measured, gib, measured - gib, int(g.get("footprint_bytes", 0)) / 2**30))
    for g in r.get("gpus", []):
        print("  GPU %s: %.1f GiB free of %.1f" % (g.get("index", 0), int(g.get("free_bytes", 0)) / 2**30,
                                                 int(g.get("total_bytes", 0)) / 2**30))
' "$gib"
echo "swaps by memory alone (two fit together):"
for m in a b c a b a c b; do swap "$m"; done
mp ls
echo "waits for freed memory (each stop until the driver gave its memory back; manager log):"
grep -oE "GPU [0-9]+: a stopped model's [0-9]+ MiB came back in [0-9]+ ms" "$dir/manager.log" |
  sed 's/^/  /' || echo "  none seen"
grep -E "driver has not given back|memory is back" "$dir/manager.log" || echo "  none past the bound"
# The model's own words (its last lines in the FAILED line) or the
# manager's retry after them.
if grep -qiE "out of memory|ran out of GPU memory" "$dir/manager.log"; then
  echo "RESULT: a start ran out of memory"; grep -iE "out of memory|ran out of GPU memory" "$dir/manager.log"; exit 1
fi
echo "RESULT: no start ran out of memory"
