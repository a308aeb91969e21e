"""Settings from ``GISGOV_*`` environment variables (pydantic-settings).

Every setting is documented in the README table; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gisgov import resources

# The folder holding the gisgov package: the git checkout when run from one (tests and tools use it
# for repository files). The data files gisgov itself needs are found by :mod:`gisgov.resources`,
# which also works from an installed wheel.
REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Runtime configuration of gisgov."""

    model_config = SettingsConfigDict(env_prefix="GISGOV_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of an existing PostGIS database; unset = embedded private cluster.",
    )
    home: Path = Field(default=Path(".gisgov"), description="Data folder of the embedded cluster, keys and outputs.")
    db_name: str = Field(default="gisgov", description="Database name inside the embedded cluster.")
    pg_bindir: Path | None = Field(
        default=None, description="PostgreSQL server binaries; found automatically when unset."
    )
    srid: int = Field(default=4490, description="Storage SRID (CGCS2000 = 4490).")
    region_bbox: tuple[float, float, float, float] = Field(
        default=(73.0, 18.0, 135.5, 54.0),
        description="lon/lat box data must fall in (China by default); used to catch swapped axes.",
    )
    host: str = Field(default="127.0.0.1", description="Address `gisgov serve` binds to.")
    port: int = Field(default=8000, description="Port `gisgov serve` binds to.")
    basemap: Literal["none", "tianditu", "amap", "tencent", "custom"] | None = Field(
        default=None,
        description="Basemap preset: none, tianditu (needs GISGOV_BASEMAP_TOKEN), amap / tencent (GCJ-02 tiles: "
        "the pages shift the data), custom (GISGOV_BASEMAP_URL, e.g. a local tile server); unset = custom when "
        "GISGOV_BASEMAP_URL is set, else none (works offline).",
    )
    basemap_token: str | None = Field(default=None, description="Tianditu key (tk) for GISGOV_BASEMAP=tianditu.")
    basemap_url: str | None = Field(
        default=None,
        description="XYZ tile URL template for the basemap ({z}/{x}/{y}; {s} with GISGOV_BASEMAP_SUBDOMAINS); "
        "with a preset it is filled in from the preset; unset = no basemap (works offline).",
    )
    basemap_subdomains: str = Field(default="abc", description="Values of {s} in a custom GISGOV_BASEMAP_URL.")
    basemap_crs: Literal["wgs84", "gcj02"] = Field(
        default="wgs84",
        description="Datum of a custom basemap's tiles: wgs84 (also CGCS2000) or gcj02 (the pages shift the data).",
    )
    basemap_attribution: str = Field(default="", description="Attribution shown with the basemap.")
    web_dir: Path = Field(
        default_factory=resources.web_dir,
        description="Folder of the browser pages and vendored assets; unset = the ones shipped with gisgov.",
    )
    layers_dir: Path = Field(
        default_factory=resources.layers_dir,
        description="Folder of the declarative layer catalog; unset = the one shipped with gisgov.",
    )
    migrations_dir: Path = Field(
        default_factory=resources.migrations_dir,
        description="Alembic migrations folder (env.py, versions/); unset = the one shipped with gisgov.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Key protecting ID numbers and phones (hash + encryption); unset = generated once into GISGOV_HOME/secret.key.",
    )
    app_role: str = Field(
        default="gisgov_app",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL role the web app connects as (owns nothing, no SUPERUSER/BYPASSRLS; created by the migrations).",
    )
    app_database_url: str | None = Field(
        default=None,
        description="URL the web app connects with (as the app role); unset = derived from the owner URL, password kept in GISGOV_HOME/app-db.key.",
    )
    read_database_url: str | None = Field(
        default=None,
        description="URL of a streaming read replica (hot standby) of the database; GET requests of read-only routes "
        "run there (the app signs in as its own app role), writes and read-your-writes stay on the primary, reads fall "
        "back to the primary while the replica is down; unset = everything on the primary.",
    )
    read_max_lag_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="Reads go to the read replica only while its replay lag is at most this many seconds (measured "
        "at most once a second per worker process, never while a request waits); over it, or not measurable, they go "
        "to the primary. 0 = no limit in seconds.",
    )
    read_max_lag_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Reads go to the read replica only while it is at most this many bytes of WAL behind the primary; "
        "unset = no limit in bytes.",
    )
    public_url: str | None = Field(
        default=None,
        description="Origin users reach the app at (links, CSRF origin check); unset = http://<host>:<port>.",
    )
    session_idle_minutes: int = Field(
        default=30, ge=1, description="A signed-in page session ends after this long without a request."
    )
    session_hours: float = Field(
        default=12, gt=0, description="A page session ends this long after sign-in whatever happens."
    )
    token_hours: float = Field(default=24, gt=0, description="Lifetime of a bearer token from /api/auth/token.")
    login_max_failures: int = Field(default=5, ge=1, description="Failed sign-ins before an account is locked.")
    lockout_minutes: float = Field(
        default=15, gt=0, description="First lock-out; doubles with every further failure (max 24 h)."
    )
    login_rate_per_minute: int = Field(default=10, ge=1, description="Sign-in attempts per client address per minute.")
    small_cell_k: int = Field(
        default=5, ge=1, description="Counts of sensitive groups below k are shown as '<k' to aggregate-only roles."
    )
    demo: bool = Field(
        default=False, description="Demo mode: demo accounts with known passwords may exist (never in production)."
    )
    pool_size: int = Field(default=20, ge=1, description="Connections the web app keeps open (per worker).")
    pool_overflow: int = Field(
        default=0,
        ge=0,
        description="Extra connections under load beyond pool_size; each is closed again when given back, so a "
        "sustained load opens new ones all the time (0 = none).",
    )
    pool_timeout_s: float = Field(
        default=60,
        gt=0,
        description="Longest wait in line for a database connection (requests queue in arrival order, without holding a thread); longer answers 503 DatabaseBusy.",
    )
    answer_cache_mb: float = Field(
        default=64,
        ge=0,
        description="Memory per worker process for answers of the leaders' read routes (statistics, hierarchy, layer "
        "pages, map page, coverage catalog), kept by role, area and committed data version; 0 = off.",
    )
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes of `gisgov serve` (uvicorn --workers).")
    max_body_mb: float = Field(
        default=4.0,
        gt=0,
        description="Largest JSON/form request body (MB); larger answers 413 while reading. Uploads: GISGOV_INGEST_MAX_UPLOAD_MB.",
    )
    max_vertices: int = Field(
        default=50_000,
        ge=100,
        description="Most polygon vertices one request may send (validate, whatif); more answers 422.",
    )
    max_list_items: int = Field(
        default=5_000,
        ge=1,
        description="Longest list one request may send (site candidates, assignments, locks); longer answers 422.",
    )
    statement_timeout_s: float = Field(
        default=30, gt=0, description="PostgreSQL statement_timeout of an ordinary request (s); longer answers 503."
    )
    analysis_timeout_s: float = Field(
        default=120,
        gt=0,
        description="statement_timeout of analysis requests (propose, repair, coverage compute, site) (s).",
    )
    solver_max_s: float = Field(
        default=60,
        gt=0,
        description="Longest solver time a propose/repair request may ask for (s); larger requests are capped.",
    )
    edit_session_idle_hours: float = Field(
        default=8, gt=0, description="A grid edit session untouched this long expires (answers 410 with what to do)."
    )
    export_sync_rows: int = Field(
        default=5_000,
        ge=0,
        description="Resident exports above this many rows run as a background job (202 + job URL).",
    )
    event_photo_max_mb: float = Field(
        default=3.0,
        gt=0,
        description="Largest event photo (MB; the report page scales photos down before sending). Must stay below GISGOV_MAX_BODY_MB.",
    )
    event_photos_max: int = Field(default=6, ge=1, le=50, description="Photos one event may hold.")
    page_limit: int = Field(default=1000, description="Default page size of /api/layers.")
    max_page_limit: int = Field(default=10000, description="Largest page size /api/layers accepts.")

    @field_validator("secret_key")
    @classmethod
    def _no_placeholder_secret(cls, v: str | None) -> str | None:
        if v is not None and (len(v) < 16 or v.lower() in {"changeme", "secret", "changethis"}):
            raise ValueError("GISGOV_SECRET_KEY must be at least 16 characters and not a placeholder")
        return v

    @model_validator(mode="after")
    def _resolve_basemap(self) -> Settings:
        """Fill basemap_url / basemap_attribution from the preset (pages and folium maps read those two)."""
        kind = self.basemap or ("custom" if self.basemap_url else "none")
        if kind == "none":
            self.basemap_url = None
        elif kind == "custom":
            if not self.basemap_url:
                raise ValueError("GISGOV_BASEMAP=custom needs GISGOV_BASEMAP_URL (an XYZ tile URL template)")
        else:
            if kind == "tianditu" and not self.basemap_token:
                raise ValueError("GISGOV_BASEMAP=tianditu needs GISGOV_BASEMAP_TOKEN (the Tianditu key, tk)")
            first = basemap_layers(kind, self.basemap_token)[0]
            self.basemap_url = _first_host(first["url"], first["subdomains"])
            self.basemap_attribution = self.basemap_attribution or BASEMAP_PRESETS[kind]["attribution"]
        self.basemap = kind
        return self

    @property
    def origin(self) -> str:
        """The origin users reach the app at (scheme://host:port), from configuration only."""
        if self.public_url:
            return self.public_url.rstrip("/")
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{shown}:{self.port}"

    @property
    def home_abs(self) -> Path:
        return self.home.expanduser().resolve()


# ---- basemap presets ------------------------------------------------------------------------------------
_TIANDITU = (
    "https://t{s}.tianditu.gov.cn/%(layer)s_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=%(layer)s"
    "&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk=%(token)s"
)
#: kind -> datum of the tiles, attribution, layers (url template, subdomains, max zoom); the first layer is the base
BASEMAP_PRESETS: dict[str, dict[str, Any]] = {
    "tianditu": {
        "crs": "wgs84",  # CGCS2000: within centimetres of WGS84 at map scale, no shift
        "attribution": "天地图 Tianditu",
        "layers": [("vec", "01234567", 18), ("cva", "01234567", 18)],
    },
    "amap": {
        "crs": "gcj02",
        "attribution": "高德地图 AMap",
        "layers": [
            (
                "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}",
                "1234",
                18,
            )
        ],
    },
    "tencent": {
        "crs": "gcj02",
        "attribution": "腾讯地图 Tencent Maps",
        "layers": [("https://rt{s}.map.gtimg.com/realtimerender?z={z}&x={x}&y={-y}&type=vector&style=0", "0123", 18)],
    },
}


def _first_host(url: str, subdomains: str) -> str:
    return url.replace("{s}", subdomains[0]) if subdomains else url


def basemap_layers(kind: str, token: str | None = None) -> list[dict[str, Any]]:
    """The tile layers of a preset: ``[{url, subdomains, max_zoom, overlay}]`` (the first is the base)."""
    out = []
    for i, (url, subdomains, max_zoom) in enumerate(BASEMAP_PRESETS[kind]["layers"]):
        if kind == "tianditu":
            url = _TIANDITU % {"layer": url, "token": token or ""}
        out.append({"url": url, "subdomains": subdomains, "max_zoom": max_zoom, "overlay": i > 0})
    return out


def basemap_config(settings: Settings) -> dict[str, Any]:
    """What a page needs to draw the basemap: ``kind``, ``crs`` (wgs84 | gcj02), ``attribution``, ``layers``
    (``[{url, subdomains, max_zoom, overlay}]``; empty for none) and ``hosts`` (the tile hosts, for the CSP)."""
    kind = settings.basemap or ("custom" if settings.basemap_url else "none")
    if kind == "none" or (kind == "custom" and not settings.basemap_url):
        return {"kind": "none", "crs": "wgs84", "attribution": "", "layers": [], "hosts": []}
    if kind == "custom":
        url = settings.basemap_url or ""
        layers = [{"url": url, "subdomains": settings.basemap_subdomains, "max_zoom": 20, "overlay": False}]
        crs = settings.basemap_crs
    else:
        layers = basemap_layers(kind, settings.basemap_token)
        crs = BASEMAP_PRESETS[kind]["crs"]
    hosts: list[str] = []
    for layer in layers:
        for h in tile_hosts(str(layer["url"]), str(layer["subdomains"])):
            if h not in hosts:
                hosts.append(h)
    return {"kind": kind, "crs": crs, "attribution": settings.basemap_attribution, "layers": layers, "hosts": hosts}


def tile_hosts(url: str | None, subdomains: str = "abc") -> list[str]:
    """``scheme://host`` of every tile server ``url`` names ({s} expanded over ``subdomains``); [] for a
    relative or empty URL (tiles served by the app itself)."""
    from urllib.parse import urlsplit

    if not url:
        return []
    out = []
    for s in subdomains if "{s}" in url else [""]:
        p = urlsplit(url.replace("{s}", s))
        if p.scheme in ("http", "https") and p.netloc:
            origin = f"{p.scheme}://{p.netloc}"
            if origin not in out:
                out.append(origin)
    return out


def preset_hosts(url: str | None) -> list[str] | None:
    """The hosts of the preset whose first host ``url`` is (``t0.tianditu.gov.cn`` -> t0..t7), else None."""
    if not url:
        return None
    for kind in BASEMAP_PRESETS:
        for layer in basemap_layers(kind, "x"):
            first = tile_hosts(_first_host(layer["url"], layer["subdomains"]))
            if first and tile_hosts(url) == first:
                hosts: list[str] = []
                for lyr in basemap_layers(kind, "x"):
                    hosts += [h for h in tile_hosts(lyr["url"], lyr["subdomains"]) if h not in hosts]
                return hosts
    return None


@lru_cache
def get_settings() -> Settings:
    return Settings()
