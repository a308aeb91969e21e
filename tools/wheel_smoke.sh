#!/usr/bin/env bash
# Wheel smoke test: build gisgov's sdist and wheel, install the wheel into a fresh virtual environment
# and run it from a folder outside the checkout: `gisgov db up`, `gisgov demo --no-serve`, then
# `gisgov serve` on a free port, fetching the sign-in page, pages behind sign-in and the vendored assets
# they reference. Everything lives in one temporary folder, removed at the end (the embedded database
# cluster it started is stopped first). Exit status 0 only when every step passed.
#
#   bash tools/wheel_smoke.sh            (run from anywhere; uses the checkout's .venv to build)
#   WHEEL_SMOKE_FULL_DEPS=1 ...          install the wheel WITH its dependencies from the package index
#   WHEEL_SMOKE_SCALE=1 ...              the full sample city (default 0.15: same code paths, minutes faster)
#   WHEEL_SMOKE_KEEP=1 ...               keep the temporary folder (printed) for a look afterwards
#
# Dependencies: installing gisgov's ~100 dependencies into every fresh venv would take minutes, so by
# default the wheel is installed with --no-deps and the new venv sees the dependencies the checkout's
# .venv already has through a folder of links to its site-packages entries, leaving out everything of
# gisgov there (its editable-install finder and metadata). `pip check` then verifies that those
# installed versions satisfy the wheel's declared requirements, and the script asserts that `gisgov`
# is imported from the new venv, not from the checkout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${WHEEL_SMOKE_PYTHON:-$ROOT/.venv/bin/python}
START=$(date +%s)
step() { printf '\033[1;34m[wheel-smoke %3ss]\033[0m %s\n' "$(($(date +%s) - START))" "$*"; }
fail() { printf '\033[1;31m[wheel-smoke] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || fail "no Python at $PY (run ./run.sh setup first)"
"$PY" -c 'import build' 2>/dev/null || fail "the 'build' package is missing in $PY (pip install -e '.[dev]')"
[ -f "$ROOT/web/node_modules/.gisgov-lock" ] || fail "web assets not installed: run npm ci --prefix web (or ./run.sh setup)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gisgov-wheel-smoke.XXXXXX")
chmod 755 "$WORK"  # when run as root, the embedded PostgreSQL runs as an unprivileged user that must reach its data folder
VENV=$WORK/venv
# system folders only (PostgreSQL's helpers such as runuser live in sbin); nothing of the checkout's .venv
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SERVER_PID=""
DB_STARTED=0

gisgov_env() {  # a clean environment: no GISGOV_* or PYTHONPATH of the caller, a private GISGOV_HOME
  env -i HOME="$WORK/userhome" PATH="$VENV/bin:$SYS_PATH" LANG=C.UTF-8 LC_ALL=C.UTF-8 \
    GISGOV_HOME="$WORK/home" "$@"
}
gg() { (cd "$WORK/run" && gisgov_env "$VENV/bin/gisgov" "$@"); }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$SERVER_PID" 2>/dev/null
  fi
  if [ "$DB_STARTED" = 1 ]; then
    gg db down >/dev/null 2>&1 || echo "[wheel-smoke] could not stop the embedded cluster in $WORK/home" >&2
  fi
  if [ $rc -ne 0 ] && [ -f "$WORK/serve.log" ]; then
    echo "--- gisgov serve log (last 40 lines) ---" >&2
    tail -n 40 "$WORK/serve.log" >&2
  fi
  if [ "${WHEEL_SMOKE_KEEP:-0}" = 1 ]; then
    echo "[wheel-smoke] kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/run" "$WORK/home" "$WORK/userhome" "$WORK/dist"

# --- 1. build (isolated: the build backend comes from the configured package index, works offline here)
step "building sdist and wheel (python -m build; the wheel is built from the sdist)"
"$PY" -m build --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; fail "build"; }
WHEEL=$(ls "$WORK"/dist/gisgov-*.whl)
SDIST=$(ls "$WORK"/dist/gisgov-*.tar.gz)
step "built $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) kB) and $(basename "$SDIST")"

# --- 2. what the wheel carries
"$PY" - "$WHEEL" <<'EOF' || fail "wheel contents"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = [
    "gisgov/resources/alembic.ini",
    "gisgov/resources/migrations/env.py",
    "gisgov/resources/layers/service_circles.yaml",
    "gisgov/resources/web/login/index.html",
    "gisgov/resources/web/common/gisgov.js",
    "gisgov/resources/web/package-lock.json",
    "gisgov/resources/web/node_modules/.gisgov-lock",
    "gisgov/resources/web/node_modules/leaflet/dist/leaflet.js",
    "gisgov/resources/web/node_modules/leaflet/dist/leaflet.css",
]
missing = [n for n in need if n not in names]
versions = [n for n in names if n.startswith("gisgov/resources/migrations/versions/") and n.endswith(".py")]
noise = [n for n in names if n.startswith(("tests/", "bench/", "tools/")) or "__pycache__" in n
         or n.endswith("/package.json") and "node_modules" in n]
vendored = [n for n in names if "/node_modules/" in n]
print(f"  {len(names)} files, {len(versions)} migrations, {len(vendored)} vendored asset files")
if missing or not versions or noise or len(vendored) > 200:
    sys.exit(f"missing {missing}, migrations {len(versions)}, noise {noise[:5]}, vendored {len(vendored)}")
EOF

# --- 3. a fresh venv with the wheel
step "creating a fresh venv and installing the wheel"
"$PY" -m venv --without-pip "$VENV"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "${WHEEL_SMOKE_FULL_DEPS:-0}" = 1 ]; then
  "$PY" -m pip --python "$VENV/bin/python" install -q "$WHEEL" || fail "pip install (with dependencies)"
else
  DEPS=$WORK/deps
  mkdir -p "$DEPS"
  for sp in $("$PY" -c 'import sysconfig; print(*{sysconfig.get_paths()[k] for k in ("purelib", "platlib")})'); do
    for entry in "$sp"/*; do
      name=$(basename "$entry")
      case "$name" in
        gisgov | gisgov-* | gisgov.* | __editable__* | *.pth) continue ;;
      esac
      [ -e "$DEPS/$name" ] || ln -s "$entry" "$DEPS/$name"
    done
  done
  echo "$DEPS" >"$SITE/zz-gisgov-smoke-deps.pth"
  "$PY" -m pip --python "$VENV/bin/python" install -q --no-deps "$WHEEL" || fail "pip install --no-deps"
fi
"$PY" -m pip --python "$VENV/bin/python" check >"$WORK/pipcheck.log" 2>&1 ||
  { cat "$WORK/pipcheck.log" >&2; fail "pip check: installed versions do not meet the wheel's requirements"; }
[ -x "$VENV/bin/gisgov" ] || fail "the wheel installed no gisgov command"

(cd "$WORK/run" && gisgov_env "$VENV/bin/python" - "$SITE" "$ROOT") <<'EOF' || fail "gisgov is not imported from the installed wheel"
import sys
from pathlib import Path
site, checkout = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
import gisgov
from gisgov import resources
from gisgov.config import get_settings
pkg = Path(gisgov.__file__).resolve().parent
assert pkg == site / "gisgov", f"gisgov imported from {pkg}, expected {site / 'gisgov'}"
assert checkout not in pkg.parents, pkg
assert resources.checkout_root() is None, resources.checkout_root()
s = get_settings()
for p in (s.web_dir, s.layers_dir, s.migrations_dir, resources.alembic_ini()):
    assert Path(p).resolve().is_relative_to(pkg / "resources"), p
    assert Path(p).exists(), p
print(f"  gisgov {gisgov.__version__} from {pkg}")
EOF

# --- 4. run it outside the checkout
step "gisgov db up (embedded cluster in a temporary GISGOV_HOME)"
DB_STARTED=1
gg db up >"$WORK/dbup.log" 2>&1 || { cat "$WORK/dbup.log" >&2; fail "gisgov db up"; }
SCALE=${WHEEL_SMOKE_SCALE:-0.15}
if [ "$SCALE" != 1 ]; then  # a smaller sample city first (demo then keeps it): the full one spends minutes on grid plans
  step "gisgov sample --scale $SCALE (a smaller synthetic city; WHEEL_SMOKE_SCALE=1: let demo build the full one)"
  gg sample --scale "$SCALE" >"$WORK/sample.log" 2>&1 || { tail -n 40 "$WORK/sample.log" >&2; fail "gisgov sample"; }
fi
step "gisgov demo --no-serve (migrations, sample city, analyses, demo accounts)"
gg demo --no-serve >"$WORK/demo.log" 2>&1 || { tail -n 40 "$WORK/demo.log" >&2; fail "gisgov demo --no-serve"; }

step "accounts for gisgov serve (it refuses to start while demo accounts with public passwords are enabled)"
PASSWORD="Smoke-wheel-$(date +%s)-Pw"
printf '%s\n' "$PASSWORD" | gg user passwd demo_admin --password-stdin >/dev/null || fail "gisgov user passwd"
for u in demo_leader demo_planner demo_staff demo_grid demo_viewer; do
  gg user disable "$u" >/dev/null || fail "gisgov user disable $u"
done

PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "gisgov serve on 127.0.0.1:$PORT"
# the port as a setting (not --port): the sign-in's same-origin check compares with the configured origin
(cd "$WORK/run" && exec env -i HOME="$WORK/userhome" PATH="$VENV/bin:$SYS_PATH" LANG=C.UTF-8 LC_ALL=C.UTF-8 \
  GISGOV_HOME="$WORK/home" GISGOV_HOST=127.0.0.1 GISGOV_PORT="$PORT" "$VENV/bin/gisgov" serve) >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!

step "fetching pages and vendored assets"
gisgov_env "$VENV/bin/python" - "http://127.0.0.1:$PORT" "$PASSWORD" "$SERVER_PID" <<'EOF' || fail "HTTP checks"
import http.cookiejar, json, os, re, sys, time, urllib.error, urllib.request

base, password, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def get(path, data=None, headers=None):
    req = urllib.request.Request(base + path, data=data, headers=headers or {})
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


deadline = time.time() + 90
while True:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("gisgov serve exited before answering")
    try:
        if get("/health")[0] == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("gisgov serve did not answer /health within 90 s")
    time.sleep(0.5)

checked = set()


def expect(path, status=200, what=""):
    code, body = get(path)
    print(f"  {code} {path} {what}")
    if code != status:
        sys.exit(f"{path}: expected {status}, got {code}: {body[:300]!r}")
    return body


def page_with_assets(path):
    html = expect(path).decode("utf-8")
    refs = sorted(set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html)))
    if not refs:
        sys.exit(f"{path}: no /static/ references in the page")
    for ref in refs:
        if ref not in checked:
            checked.add(ref)
            expect(ref.replace("&amp;", "&"), what="(referenced)")
    return html, refs


login_html, _ = page_with_assets("/login")
status, body = get(
    "/api/auth/login",
    data=json.dumps({"username": "demo_admin", "password": password}).encode(),
    headers={"Content-Type": "application/json", "Origin": base},
)
print(f"  {status} POST /api/auth/login")
if status != 200:
    sys.exit(f"sign-in failed: {status} {body[:300]!r}")
_, refs = page_with_assets("/dashboard")
if not any(r.startswith("/static/vendor/leaflet/") for r in refs):
    sys.exit("/dashboard references no vendored Leaflet asset")
_, refs = page_with_assets("/map")  # the folium map: jQuery, Bootstrap, Font Awesome, awesome-markers
if len([r for r in refs if r.startswith("/static/vendor/")]) < 4:
    sys.exit(f"/map references too few vendored assets: {refs}")
page_with_assets("/docs")  # Swagger UI, vendored
expect("/static/vendor/leaflet/dist/images/layers.png", what="(image loaded by leaflet.css)")
expect("/static/vendor/@fortawesome/fontawesome-free/webfonts/fa-solid-900.woff2", what="(font loaded by all.min.css)")
expect("/static/vendor/leaflet/package.json", 404, "(not a served asset)")
print(f"  {len(checked)} referenced static files answered 200")
EOF

step "stopping the server and the embedded cluster"
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
gg db down >/dev/null || fail "gisgov db down"
DB_STARTED=0
step "passed"
