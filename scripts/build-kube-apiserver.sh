#!/usr/bin/env bash
# Builds kube-apiserver 1.20.2 from Debian's `kubernetes` source package with Debian's Go, once, into a cache
# outside the repository, and prints the directory that holds it. No registry offers a recent kube-apiserver
# binary; the test of Vault's Kubernetes login (tests/k8s, `make test-vault-k8s`) needs a real one to issue
# audience-bound service-account tokens (TokenRequest) and to answer OpenBao's TokenReviews.
#
# Idempotent: when the cached binary is there and runs, nothing is built (under a second). A build takes
# about 10 minutes on 2 cores and about 3 GB of scratch space, removed afterwards.
#
# usage: scripts/build-kube-apiserver.sh [--print-dir] [--check]
#   --print-dir  print only the cache directory (built or not) and exit
#   --check      exit 1, naming what is missing, instead of building
# Environment:
#   LIKENESS_KUBE_DIR  the cache directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/likeness/kube/1.20.2)
#   KUBE_BUILD_DIR     scratch directory for the source tree (default: a new directory beside the cache)
# Needs (scripts/install-system-packages.sh installs them: `make kube-apiserver` runs it first): Debian's
# golang-go, dpkg-dev (apt-get source), golang-github-modern-go-reflect2-dev, rsync, and a deb-src entry.
set -euo pipefail

KUBE_VERSION=1.20.2
# Debian's source version: upstream 1.20.5 was reverted to 1.20.2 ("really"); deb12u1 is bookworm's.
DEBIAN_SOURCE=kubernetes
CACHE_DIR="${LIKENESS_KUBE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/likeness/kube/$KUBE_VERSION}"
BINARIES=(kube-apiserver)
# reflect2 v1.0.1 (vendored) reads Go's runtime maps with a layout Go 1.18 changed: it crashes at startup.
# v1.0.2 is the fix, and Debian ships its source.
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

check_only=0
while (($#)); do
  case $1 in
    --print-dir) echo "$CACHE_DIR"; exit 0 ;;
    --check) check_only=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

fail() {
  echo "build-kube-apiserver: $*" >&2
  exit 1
}

built() {
  local binary
  for binary in "${BINARIES[@]}"; do
    [[ -x "$CACHE_DIR/$binary" ]] || return 1
    "$CACHE_DIR/$binary" --version 2>/dev/null | grep -q "v$KUBE_VERSION" || return 1
  done
}

if built; then
  echo "$CACHE_DIR"
  exit 0
fi

missing=()
command -v go >/dev/null 2>&1 || missing+=("go (Debian: golang-go)")
command -v apt-get >/dev/null 2>&1 || missing+=("apt-get (a Debian or Ubuntu system)")
command -v dpkg-source >/dev/null 2>&1 || missing+=("dpkg-source (Debian: dpkg-dev)")
command -v rsync >/dev/null 2>&1 || missing+=("rsync")
[[ -f "$REFLECT2_SRC/reflect2.go" ]] || missing+=("$REFLECT2_SRC (Debian: golang-github-modern-go-reflect2-dev)")
if command -v apt-cache >/dev/null 2>&1 && ! apt-cache showsrc "$DEBIAN_SOURCE" 2>/dev/null | grep -q "really$KUBE_VERSION"; then
  missing+=("a deb-src entry offering $DEBIAN_SOURCE $KUBE_VERSION (Debian bookworm)")
fi
if ((${#missing[@]})); then
  printf '  %s\n' "${missing[@]}" >&2
  fail "cannot build kube-apiserver $KUBE_VERSION: the above is missing (scripts/install-system-packages.sh" \
    "kube-build installs it where permitted)"
fi
((check_only)) && fail "kube-apiserver $KUBE_VERSION is not built in $CACHE_DIR (run $0)"

mkdir -p "$(dirname "$CACHE_DIR")"
BUILD_DIR="${KUBE_BUILD_DIR:-$(mktemp -d "$(dirname "$CACHE_DIR")/build-$KUBE_VERSION.XXXXXX")}"
cleanup() { rm -rf "$BUILD_DIR"; }
trap cleanup EXIT
echo "build-kube-apiserver: building kube-apiserver $KUBE_VERSION in $BUILD_DIR (about 10 minutes)" >&2

cd "$BUILD_DIR"
apt-get source -qq "$DEBIAN_SOURCE" >/dev/null 2>apt-source.log || {
  cat apt-source.log >&2
  fail "apt-get source $DEBIAN_SOURCE failed"
}
src="$(find . -maxdepth 1 -type d -name "kubernetes-*really$KUBE_VERSION" | head -n1)"
[[ -n "$src" ]] || fail "apt-get source gave no kubernetes-*really$KUBE_VERSION directory"
cd "$src"

vendored=vendor/github.com/modern-go/reflect2
[[ -d "$vendored" ]] || fail "no $vendored in the source tree"
rm -rf "$vendored"
mkdir -p "$vendored"
# The sources only (Go files and assembly): vendor/modules.txt still says v1.0.1, which go -mod=vendor
# checks against go.mod; the API is the same.
find "$REFLECT2_SRC" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
  -exec cp {} "$vendored/" \;

# As debian/rules builds it: a GOPATH whose k8s.io/kubernetes is this tree, no cgo (a static binary).
export GOPATH="$PWD/.go" GOCACHE="$PWD/.gocache" CGO_ENABLED=0 GOFLAGS=
mkdir -p .go/src/k8s.io
ln -s ../../.. .go/src/k8s.io/kubernetes
make WHAT="$(printf 'cmd/%s ' "${BINARIES[@]}")" >"$BUILD_DIR/make.log" 2>&1 || {
  tail -n 60 "$BUILD_DIR/make.log" >&2
  fail "make WHAT=cmd/kube-apiserver failed (the log's end is above)"
}

staged="$CACHE_DIR.new"
rm -rf "$staged"
mkdir -p "$staged"
for binary in "${BINARIES[@]}"; do
  install -m 0755 "_output/bin/$binary" "$staged/$binary"
done
rm -rf "$CACHE_DIR"
mv "$staged" "$CACHE_DIR"
built || fail "the built binaries in $CACHE_DIR do not report v$KUBE_VERSION"
echo "build-kube-apiserver: built $(IFS=,; echo "${BINARIES[*]}") $KUBE_VERSION into $CACHE_DIR" >&2
echo "$CACHE_DIR"
