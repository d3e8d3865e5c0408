#!/usr/bin/env bash
# Installs the Debian packages (and, for the tests, the npm packages of
# tests/e2e/node, pinned by its lockfile) that a make target needs, and
# only those: `make demo` gets no benchmark peers nor fuzzing compilers.
#
#   tools/bootstrap.sh [build|demo|test|bench|deb|fuzz|all]   # default: all
#
# Idempotent: when everything is present it only runs dpkg-query and
# compares a lockfile, and returns in about a second. Needs root (or sudo)
# only when a Debian package is missing.
set -euo pipefail
want="${1:-all}"

# One package per line, grouped by what needs it.
BUILD=(
  # Bazel 4.2.3 (offline with the shims in tools/bazel), compiler, libraries.
  bazel-bootstrap g++ make
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libabsl-dev libuv1-dev libnghttp2-dev libhttp-parser-dev libyaml-cpp-dev
  libre2-dev rapidjson-dev libsimdjson-dev libssl-dev libc-ares-dev
  libgtest-dev libgmock-dev libbenchmark-dev libbrotli-dev zlib1g-dev
  libsqlite3-dev libjemalloc-dev
)
DEMO=(
  # tools/demo.sh: its checks and the commands it prints.
  curl python3 procps
)
TEST=(
  # Real clients, and the formatting check.
  python3 python3-grpcio python3-protobuf python3-h2 curl nghttp2-client
  openssl procps clang-format dnsmasq-base python3-kubernetes python3-yaml
  python3-prometheus-client
  # The web UI's browser test (driven by playwright-core from npm).
  chromium
  # The Debian package's build and install test.
  dpkg-dev lintian adduser
  # https:// peers: nginx terminating TLS in front of a fake model; ss
  # reads the proxy's upstream sockets' keepalive timers.
  nginx iproute2
)
DEB=(
  # make deb: the package (dpkg-shlibdeps) and its check.
  dpkg-dev lintian
)
BENCH=(
  # Peers and load generators.
  nginx nghttp2-proxy wrk hey python3
)
FUZZ=(
  # make fuzz: clang with libFuzzer and the sanitizer runtimes.
  clang-14 libclang-rt-14-dev
)
case "$want" in
  build) PACKAGES=("${BUILD[@]}") ;;
  demo) PACKAGES=("${BUILD[@]}" "${DEMO[@]}") ;;
  test) PACKAGES=("${BUILD[@]}" "${DEMO[@]}" "${TEST[@]}") ;;
  bench) PACKAGES=("${BUILD[@]}" "${BENCH[@]}") ;;
  deb) PACKAGES=("${BUILD[@]}" "${DEB[@]}") ;;
  fuzz) PACKAGES=("${BUILD[@]}" "${FUZZ[@]}") ;;
  all) PACKAGES=("${BUILD[@]}" "${DEMO[@]}" "${TEST[@]}" "${BENCH[@]}" "${FUZZ[@]}") ;;
  *) echo "usage: tools/bootstrap.sh [build|demo|test|bench|deb|fuzz|all]" >&2; exit 2 ;;
esac
# The tests' OpenAI Node SDK: only for test and all.
need_node=false
[[ "$want" == test || "$want" == all ]] && need_node=true

missing=()
while read -r status pkg; do
  [[ "$status" == "installed" ]] || missing+=("$pkg")
done < <(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${PACKAGES[@]}" 2>/dev/null || true)
# dpkg-query prints nothing for packages it has never heard of.
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -q '^installed$' ||
    [[ " ${missing[*]-} " == *" $p "* ]] || missing+=("$p")
done

# Node.js and npm: any already on the PATH the tests run with (.bazelrc:
# /usr/local/bin:/usr/bin:/bin) will do; Debian's are the fallback. (A Node
# under ~/.nvm is not seen by the tests.)
if $need_node && { ! PATH=/usr/local/bin:/usr/bin:/bin command -v node >/dev/null 2>&1 ||
   ! PATH=/usr/local/bin:/usr/bin:/bin command -v npm >/dev/null 2>&1; }; then
  missing+=(nodejs npm)
fi

install_missing() {
  echo "bootstrap: installing ${#missing[@]} missing package(s): ${missing[*]}"
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      echo "bootstrap: missing packages (${missing[*]}) and not root;" \
        "run 'sudo tools/bootstrap.sh' once." >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be absent on a fresh machine: update once, then install.
  if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # nginx's Debian package starts a system service on port 80; the benchmarks run
  # their own instance, so keep the system one out of the way.
  if [[ " ${missing[*]} " == *" nginx "* ]]; then
    (command -v systemctl >/dev/null && "${SUDO[@]}" systemctl disable --now nginx) >/dev/null 2>&1 || true
    "${SUDO[@]}" nginx -s stop >/dev/null 2>&1 || true
  fi
  echo "bootstrap: done"
}
if [[ ${#missing[@]} -gt 0 ]]; then
  install_missing
fi

$need_node || exit 0
# The OpenAI Node SDK for tests/e2e, from the npm registry: `npm ci` only
# when the lockfile differs from the one last installed.
node_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/node"
stamp="$node_dir/node_modules/.modelplane-lock.json"
if ! cmp -s "$node_dir/package-lock.json" "$stamp"; then
  echo "bootstrap: npm ci in tests/e2e/node"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$node_dir/package-lock.json" "$stamp"
fi
