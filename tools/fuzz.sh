#!/usr/bin/env bash
# `make fuzz`: coverage-guided fuzzing of the proxy's readers of untrusted
# bytes (proxy/fuzz/libfuzzer_target.cc: the HTTP/1.1 request and response
# parsers, the JSON and multipart model scanners, the HTTP/2 server session)
# with libFuzzer, ASan and UBSan, built by clang outside Bazel (Bazel here
# builds with gcc, which has no libFuzzer).
#
#   make fuzz                      # 60 s
#   FUZZ_SECONDS=3600 make fuzz    # longer
#   FUZZ_DIR=/var/tmp/f make fuzz  # keep the grown corpus there
#
# It starts from proxy/fuzz/corpus; inputs that reach new code are added to
# $FUZZ_DIR/corpus. A crash leaves its input in $FUZZ_DIR (printed) and exits
# 1; reproduce with `$FUZZ_DIR/proxy_fuzzer <file>`. Promising inputs can be
# copied into proxy/fuzz/corpus, which //proxy/fuzz:libfuzzer_target_test
# replays on every `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
dir="${FUZZ_DIR:-$(mktemp -d /tmp/modelplane-fuzz.XXXXXX)}"
mkdir -p "$dir/corpus"
cxx="$(command -v clang++-14 || command -v clang++ || true)"
if [[ -z "$cxx" ]]; then
  echo "fuzz: clang++ is missing (tools/bootstrap.sh installs clang-14)" >&2
  exit 1
fi
# The same Abseil libraries as the Bazel build links (third_party/BUILD.bazel).
mapfile -t absl < <(grep -o '"-labsl_[a-z0-9_]*"' third_party/BUILD.bazel | tr -d '"')
echo "fuzz: building $dir/proxy_fuzzer"
"$cxx" -std=c++17 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. \
  proxy/fuzz/libfuzzer_target.cc proxy/http1/codec.cc \
  proxy/http2/server_session.cc proxy/router/json_scanner.cc \
  proxy/router/multipart_scanner.cc \
  -o "$dir/proxy_fuzzer" -lhttp_parser -lnghttp2 "${absl[@]}" -pthread
cp proxy/fuzz/corpus/* "$dir/corpus/"
echo "fuzz: running for ${seconds}s; corpus and crashes in $dir"
"$dir/proxy_fuzzer" -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$dir/" "$dir/corpus"
