#!/usr/bin/env bash
# gisgov: set everything up (idempotently) and run the main job or the test suite.
#
#   ./run.sh          system packages, venv, front-end assets, PostGIS, sample city,
#                     analyses, then serve the web app on 127.0.0.1 (prints the URL)
#   ./run.sh test     the same set-up, then the whole test suite
#   ./run.sh setup    only the set-up
#
# Every step checks first and does nothing when its work is already done.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
MODE=${1:-demo}
[ $# -gt 0 ] && shift

say() { printf '\033[1;34m[gisgov]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[gisgov]\033[0m %s\n' "$*" >&2; exit 1; }

# --- 1. system packages (Debian) ------------------------------------------------
APT_PKGS=(postgresql-15 postgresql-15-postgis-3 postgresql-15-pgrouting chromium fonts-wqy-microhei nodejs npm python3-venv git)
missing=()
for p in "${APT_PKGS[@]}"; do
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    git) command -v git >/dev/null 2>&1 && continue ;;
    python3-venv) python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && continue ;;
  esac
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    say "installing system packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    say "installing system packages with sudo: ${missing[*]}"
    sudo sh -c "$cmd" >/dev/null
  else
    die "missing system packages; run as root:  $cmd"
  fi
fi

# --- 2. Python environment --------------------------------------------------------
PY=""
for c in python3.13 python3.12 python3.11 python3; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    PY=$(command -v "$c"); break
  fi
done
[ -n "$PY" ] || die "Python 3.11 or newer is required"
if [ ! -x .venv/bin/python ]; then
  say "creating virtual environment (.venv) with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.gisgov-installed
extras='test,osm,dev,dask'
want=$( (cat pyproject.toml; echo "$extras") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing gisgov and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
fi

# --- 3. front-end assets (vendored from the npm registry, pinned by the lock file) --
if [ -f web/package-lock.json ]; then
  wstamp=web/node_modules/.gisgov-lock
  wwant=$(sha256sum web/package-lock.json | cut -d' ' -f1)
  if [ ! -f "$wstamp" ] || [ "$(cat "$wstamp")" != "$wwant" ]; then
    say "installing front-end assets (npm ci)"
    npm ci --prefix web --no-audit --no-fund --loglevel=error >/dev/null
    echo "$wwant" > "$wstamp"
  fi
fi

# --- 4. the job ------------------------------------------------------------------------
case "$MODE" in
  setup)
    say "set-up done" ;;
  demo)
    exec .venv/bin/gisgov demo "$@" ;;
  test)
    if [ $# -eq 0 ]; then  # the whole suite: habits first (lint, format, types, the installed wheel)
      say "lint and format (ruff)"
      .venv/bin/ruff check . || die "ruff found problems (fix, or run: .venv/bin/ruff check --fix .)"
      .venv/bin/ruff format --check . >/dev/null || die "code not formatted (run: .venv/bin/ruff format .)"
      say "types (mypy: strict packages clean, the rest no worse than tools/mypy-baseline.txt)"
      .venv/bin/python tools/mypy_baseline.py check || die "mypy: new type errors (see above)"
      say "wheel smoke test (built wheel in a fresh venv, no checkout)"
      bash tools/wheel_smoke.sh || die "the built wheel does not install or run"
    fi
    set +e
    .venv/bin/python -m pytest "$@"
    rc=$?
    [ $rc -eq 5 ] && { echo "no tests were collected" >&2; exit 1; }
    exit $rc ;;
  *)
    die "unknown mode '$MODE' (use: ./run.sh [demo|test|setup])" ;;
esac
