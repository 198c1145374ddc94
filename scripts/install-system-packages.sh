#!/usr/bin/env bash
# The system packages `make test` and `make demo` need beyond Python 3.11 (everything else comes from PyPI
# into .venv). Each one missing is installed when that is permitted here: as root, or with passwordless
# sudo, through apt-get (Debian, Ubuntu); through Homebrew where there is no apt-get (macOS). Otherwise,
# or with --check, nothing is installed: the script lists what is missing and the command that installs
# it, and exits 1, so that no test runs (and fails, or is skipped) for want of a tool.
#
# usage: scripts/install-system-packages.sh [--check] [--for WHAT] REQUIREMENT...
#   REQUIREMENT  python-venv (PYTHON's venv and ensurepip modules), exiftool, prometheus, promtool;
#                etcd; and what scripts/build-kube-apiserver.sh needs to build kube-apiserver from Debian's
#                source package (Debian or Ubuntu only): go, dpkg-source, rsync, reflect2-source (Debian's
#                modern-go/reflect2 sources) and kubernetes-source (a deb-src entry for bookworm, whose
#                `kubernetes` source package is 1.20.2; added as /etc/apt/sources.list.d/likeness-deb-src.sources)
#   --check      never install, only report
#   --for WHAT   who needs them, for the message (e.g. "make test")
# Environment: PYTHON, the interpreter whose venv module is checked (default python3.11).
# The Makefile's `system-packages` target runs it; `make test`, `make demo` and CI (.ci/run) go through it.
set -euo pipefail

PYTHON=${PYTHON:-python3.11}
# Debian's kubernetes source package: bookworm's 1.20.5+really1.20.2 (upstream 1.20.5 reverted to 1.20.2).
KUBE_SOURCE_VERSION=1.20.2
REFLECT2_SOURCE=/usr/share/gocode/src/github.com/modern-go/reflect2
DEB_SRC_ENTRY=/etc/apt/sources.list.d/likeness-deb-src.sources
check_only=0
needed_by="the tests"
wanted=()
while (($#)); do
  case $1 in
    --check) check_only=1 ;;
    --for) needed_by=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "$0: unknown option $1" >&2; exit 2 ;;
    *) wanted+=("$1") ;;
  esac
  shift
done

# Whether a requirement is met now.
present() {
  case $1 in
    python-venv) "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 ;;
    exiftool | prometheus | promtool | etcd | go | dpkg-source | rsync) command -v "$1" >/dev/null 2>&1 ;;
    reflect2-source) [[ -f "$REFLECT2_SOURCE/reflect2.go" ]] ;;
    kubernetes-source)
      command -v apt-cache >/dev/null 2>&1 && apt-cache showsrc kubernetes 2>/dev/null | grep -q "really$KUBE_SOURCE_VERSION"
      ;;
    *) echo "$0: unknown requirement $1" >&2; exit 2 ;;
  esac
}

# The package that provides a requirement, for a package manager (apt or brew).
package_for() {
  case $1:$2 in
    python-venv:apt) "$PYTHON" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])' ;;
    python-venv:brew) "$PYTHON" -c 'import sys; print("python@%d.%d" % sys.version_info[:2])' ;;
    exiftool:apt) echo libimage-exiftool-perl ;;
    exiftool:brew) echo exiftool ;;
    prometheus:*) echo prometheus ;;  # promtool comes with it
    promtool:*) echo prometheus ;;
    etcd:apt) echo etcd-server ;;
    etcd:brew) echo etcd ;;
    go:apt) echo golang-go ;;
    dpkg-source:apt) echo dpkg-dev ;;
    rsync:*) echo rsync ;;
    reflect2-source:apt) echo golang-github-modern-go-reflect2-dev ;;
    # The deb-src entry is written by this script; the package is the key it is signed with.
    kubernetes-source:apt) echo debian-archive-keyring ;;
    # Nothing for the rest (Homebrew has no Debian source packages): kube-apiserver builds on Debian or Ubuntu.
  esac
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "error: $PYTHON not found: the project needs Python 3.11 (set PYTHON=... to use another path)" >&2
  exit 1
fi

missing=()
for requirement in ${wanted[@]+"${wanted[@]}"}; do
  present "$requirement" || missing+=("$requirement")
done
((${#missing[@]})) || exit 0

if command -v apt-get >/dev/null 2>&1; then
  manager=apt
elif command -v brew >/dev/null 2>&1; then
  manager=brew
else
  manager=
fi

packages=()
unavailable=()  # requirements the package manager here cannot meet
if [[ -n $manager ]]; then
  for requirement in "${missing[@]}"; do
    package=$(package_for "$requirement" "$manager")
    if [[ -z $package ]]; then
      unavailable+=("$requirement")
      continue
    fi
    [[ " ${packages[*]-} " == *" $package "* ]] || packages+=("$package")
  done
fi
wants_deb_src=0
[[ $manager == apt && " ${missing[*]} " == *" kubernetes-source "* ]] && wants_deb_src=1

# The deb-src entry that offers Debian bookworm's kubernetes source package (signed by Debian's archive key).
deb_src_entry() {
  printf '%s\n' "Types: deb-src" "URIs: http://deb.debian.org/debian" "Suites: bookworm" "Components: main" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
}

# How to run the package manager here, if it may be run at all.
as_root=()
permitted=0
if [[ $manager == brew ]]; then
  permitted=1  # Homebrew installs as the user
elif [[ $manager == apt ]]; then
  if [[ $(id -u) == 0 ]]; then
    permitted=1
  elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    permitted=1
    as_root=(sudo -n)
  fi
fi

complain() {
  echo "error: $needed_by needs system packages that are missing here ($1):" >&2
  for requirement in "${missing[@]}"; do
    if [[ -n $manager ]]; then
      printf '  %-12s (%s package %s)\n' "$requirement" "$manager" \
        "$(package_for "$requirement" "$manager" | grep . || echo 'none: needs Debian or Ubuntu')" >&2
    else
      printf '  %s\n' "$requirement" >&2
    fi
  done
  case $manager in
    apt)
      echo "Install them, then try again:
  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${packages[*]}" >&2
      if ((wants_deb_src)); then
        printf "  printf '%%s\\\\n' %s| sudo tee %s && sudo apt-get update\n" \
          "$(deb_src_entry | sed "s/.*/'&'/" | tr '\n' ' ')" "$DEB_SRC_ENTRY" >&2
      fi
      ;;
    brew) echo "Install them, then try again:
  brew install ${packages[*]}" >&2 ;;
    *) echo "Install them with your system's package manager (Debian: libimage-exiftool-perl, prometheus," \
      "python3.11-venv), then try again." >&2 ;;
  esac
  exit 1
}

if ((${#unavailable[@]})); then
  complain "$manager has nothing for ${unavailable[*]}: kube-apiserver is built from Debian's source package"
elif ((check_only)); then
  complain "only checked, as asked"
elif ((!permitted)); then
  if [[ -z $manager ]]; then
    complain "no apt-get or brew to install them with"
  else
    complain "installing them needs root or passwordless sudo"
  fi
fi

echo "installing system packages for $needed_by: ${packages[*]}"
case $manager in
  apt)
    ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${packages[@]}"
    if [[ " ${packages[*]} " == *" prometheus "* && -d /run/systemd/system ]]; then
      echo "note: Debian's prometheus package also enables and starts a system-wide prometheus service" \
        "(port 9090); the tests start their own and do not need it: sudo systemctl disable --now prometheus"
    fi
    if [[ " ${packages[*]} " == *" etcd-server "* && -d /run/systemd/system ]]; then
      echo "note: Debian's etcd-server package also enables and starts a system-wide etcd (port 2379); the" \
        "tests start their own and do not need it: sudo systemctl disable --now etcd"
    fi
    if ((wants_deb_src)); then
      echo "adding $DEB_SRC_ENTRY (Debian bookworm's source packages, for kubernetes $KUBE_SOURCE_VERSION)"
      deb_src_entry | ${as_root[@]+"${as_root[@]}"} tee "$DEB_SRC_ENTRY" >/dev/null
      ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    fi
    ;;
  brew) brew install "${packages[@]}" ;;
esac

still=()
for requirement in "${missing[@]}"; do
  present "$requirement" || still+=("$requirement")
done
if ((${#still[@]})); then
  echo "error: still missing after installing ${packages[*]}: ${still[*]}" >&2
  exit 1
fi
