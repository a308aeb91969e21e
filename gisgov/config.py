"""Settings from ``GISGOV_*`` environment variables (pydantic-settings).

Every setting is documented in the README table; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
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
    basemap_url: str | None = Field(
        default=None,
        description="XYZ tile URL template for the basemap; unset = no basemap (works offline).",
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
    pool_size: int = Field(default=10, ge=1, description="Connections the web app keeps open.")
    pool_overflow: int = Field(default=10, ge=0, description="Extra connections under load beyond pool_size.")
    pool_timeout_s: float = Field(
        default=60,
        gt=0,
        description="Longest wait in line for a database connection (requests queue in arrival order, without holding a thread); longer answers 503 DatabaseBusy.",
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


@lru_cache
def get_settings() -> Settings:
    return Settings()
