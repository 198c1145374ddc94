#!/usr/bin/env bash
# The system packages `make test` and `make demo` need beyond Python 3.11 (everything else comes from PyPI
# into .venv). Each one missing is installed when that is permitted here: as root, or with passwordless
# sudo, through apt-get (Debian, Ubuntu); through Homebrew where there is no apt-get (macOS). Otherwise,
# or with --check, nothing is installed: the script lists what is missing and the command that installs
# it, and exits 1, so that no test runs (and fails, or is skipped) for want of a tool.
#
# usage: scripts/install-system-packages.sh [--check] [--for WHAT] REQUIREMENT...
#   REQUIREMENT  python-venv (PYTHON's venv and ensurepip modules), exiftool, prometheus, promtool
#   --check      never install, only report
#   --for WHAT   who needs them, for the message (e.g. "make test")
# Environment: PYTHON, the interpreter whose venv module is checked (default python3.11).
# The Makefile's `system-packages` target runs it; `make test`, `make demo` and CI (.ci/run) go through it.
set -euo pipefail

PYTHON=${PYTHON:-python3.11}
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
    exiftool | prometheus | promtool) command -v "$1" >/dev/null 2>&1 ;;
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
if [[ -n $manager ]]; then
  for requirement in "${missing[@]}"; do
    package=$(package_for "$requirement" "$manager")
    [[ " ${packages[*]-} " == *" $package "* ]] || packages+=("$package")
  done
fi

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
      printf '  %-12s (%s package %s)\n' "$requirement" "$manager" "$(package_for "$requirement" "$manager")" >&2
    else
      printf '  %s\n' "$requirement" >&2
    fi
  done
  case $manager in
    apt) echo "Install them, then try again:
  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${packages[*]}" >&2 ;;
    brew) echo "Install them, then try again:
  brew install ${packages[*]}" >&2 ;;
    *) echo "Install them with your system's package manager (Debian: libimage-exiftool-perl, prometheus," \
      "python3.11-venv), then try again." >&2 ;;
  esac
  exit 1
}

if ((check_only)); then
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
