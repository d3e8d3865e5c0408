#!/bin/bash
# GPU memory scheduling on a real GPU (docs/gpu.md): three models that each
# take a share of GPU 0 with PyTorch, two of which fit together, swapped by
# memory alone (no groups). Prints the footprints measured against what was
# allocated, the swap times (which include the wait for the driver to give
# a stopped model's memory back), and whether any start ran out of memory.
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
trap 'kill "$mm" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
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
"$MODELMANAGER" --config "$dir/config.yaml" --listen "unix:$sock" 2> "$dir/manager.log" &
mm=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
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
mp --json ls | "$PYTHON" -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    for m in r.get("models", []):
        g = m.get("gpuMemory", {})
        print("  %s: measured %.2f GiB" % (m["id"], int(g.get("measuredBytes", 0)) / 2**30))
    for g in r.get("gpus", []):
        print("  GPU %s: %.1f GiB free of %.1f" % (g.get("index", 0), int(g.get("freeBytes", 0)) / 2**30, int(g["totalBytes"]) / 2**30))
'
echo "swaps by memory alone (two fit together):"
for m in a b c a b a c b; do swap "$m"; done
mp ls
echo "waits for freed memory (manager log):"
grep -E "driver has not given back|memory is back" "$dir/manager.log" || echo "  none past the bound"
if grep -qiE "out of memory" "$dir/manager.log"; then
  echo "RESULT: a start ran out of memory"; grep -i "out of memory" "$dir/manager.log"; exit 1
fi
echo "RESULT: no start ran out of memory"
