#!/usr/bin/env bash
# Builds modelplane's Debian package from built binaries (the genrule in
# this directory runs it; `make deb` builds that with -c opt and runs
# lintian on it).
#
#   build_deb.sh --out OUT.deb --version-file VERSION --modelplane BIN
#     --modelmanager BIN --modelproxy BIN --mpctl BIN --config YAML
#     --copyright F --postinst F --postrm F --prerm F
#     [--unit F]... [--doc F]...
set -euo pipefail
units=()
docs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2" ;;
    --version-file) version_file="$2" ;;
    --modelplane | --modelmanager | --modelproxy | --mpctl)
      declare "bin_${1#--}=$2" ;;
    --config) config="$2" ;;
    --copyright) copyright="$2" ;;
    --postinst) postinst="$2" ;;
    --postrm) postrm="$2" ;;
    --prerm) prerm="$2" ;;
    --unit) units+=("$2") ;;
    --doc) docs+=("$2") ;;
    *) echo "build_deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
version=$(tr -d ' \n' <"$version_file")
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
doc="$root/usr/share/doc/modelplane"
install -d -m 755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
  "$root/etc/modelplane" "$doc"

for b in modelplane modelmanager modelproxy mpctl; do
  var="bin_$b"
  install -m 755 "${!var}" "$root/usr/bin/$b"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/usr/bin/$b"
done
# The example units, pointed at the packaged binaries.
for u in "${units[@]}"; do
  sed 's#/usr/local/bin/#/usr/bin/#g' "$u" >"$root/lib/systemd/system/$(basename "$u")"
  chmod 644 "$root/lib/systemd/system/$(basename "$u")"
done
install -m 644 "$config" "$root/etc/modelplane/config.yaml"
install -m 644 "$copyright" "$doc/copyright"
for d in "${docs[@]}"; do
  gzip -9n <"$d" >"$doc/$(basename "$d").gz"
  chmod 644 "$doc/$(basename "$d").gz"
done
# A manual page per program: what it is, and its --help.
declare -A what=(
  [modelplane]="run local inference servers on demand behind one OpenAI API (manager and proxy in one process)"
  [modelmanager]="modelplane's control plane: model processes, swaps and leases over gRPC"
  [modelproxy]="modelplane's data plane: the OpenAI-compatible HTTP endpoint"
  [mpctl]="drive a modelplane manager from the command line"
)
man="$root/usr/share/man/man1"
install -d -m 755 "$man"
month=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" '+%B %Y')
for b in modelplane modelmanager modelproxy mpctl; do
  var="bin_$b"
  {
    echo ".TH ${b^^} 1 \"$month\" \"modelplane $version\" \"User Commands\""
    echo ".SH NAME"
    echo "$b \\- ${what[$b]}"
    echo ".SH SYNOPSIS AND OPTIONS"
    echo ".nf"
    # roff: a backslash doubled, a line's leading dot or quote escaped.
    "${!var}" --help 2>&1 | sed -e 's/\\/\\\\/g' -e "s/^\([.']\)/\\\\\&\1/"
    echo ".fi"
    echo ".SH SEE ALSO"
    echo "/usr/share/doc/modelplane/operations.md.gz (flags, signals, logs,"
    echo "metrics), /usr/share/doc/modelplane/config.md.gz (the config file)."
  } | gzip -9n >"$man/$b.1.gz"
  chmod 644 "$man/$b.1.gz"
done

date=$(date -u -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
printf '%s\n' \
  "modelplane ($version) unstable; urgency=medium" "" \
  "  * modelplane $version." "" \
  " -- modelplane maintainers <maintainers@modelplane.example.org>  $date" |
  gzip -9n >"$doc/changelog.gz"  # A native package's name for it.
chmod 644 "$doc/changelog.gz"

install -m 755 "$postinst" "$root/DEBIAN/postinst"
install -m 755 "$postrm" "$root/DEBIAN/postrm"
install -m 755 "$prerm" "$root/DEBIAN/prerm"
echo /etc/modelplane/config.yaml >"$root/DEBIAN/conffiles"
chmod 644 "$root/DEBIAN/conffiles"

# The shared libraries' packages, as dpkg-shlibdeps finds them.
mkdir -p "$work/debian"
printf 'Source: modelplane\n\nPackage: modelplane\nArchitecture: any\n' \
  >"$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O root/usr/bin/* 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
size=$(du -k -s --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: modelplane
Version: $version
Architecture: $arch
Maintainer: modelplane maintainers <maintainers@modelplane.example.org>
Installed-Size: $size
Depends: $shlibs, adduser
Section: net
Priority: optional
Description: local LLM inference servers on demand behind one OpenAI API
 modelplane runs local inference servers (llama.cpp's llama-server, vLLM,
 whisper.cpp, any HTTP server) on demand, swaps them under resource rules,
 and serves them behind one OpenAI-compatible endpoint with a web UI. It
 reads llama-swap's config.yaml.
 .
 modelplane runs the manager and the proxy in one process; modelmanager
 (gRPC control plane) and modelproxy (HTTP data plane) run them apart, for
 a cluster; mpctl drives a manager.
CONTROL
chmod 644 "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' |
  LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 644 "$root/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
