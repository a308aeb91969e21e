"""Settings from ``GISGOV_*`` environment variables (pydantic-settings).

Every setting is documented in the README table; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    pg_bindir: Path | None = Field(default=None, description="PostgreSQL server binaries; found automatically when unset.")
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
    web_dir: Path = Field(default=REPO_ROOT / "web", description="Folder of the browser pages and vendored assets.")
    layers_dir: Path = Field(default=REPO_ROOT / "layers", description="Folder of the declarative layer catalog.")
    secret_key: str | None = Field(
        default=None,
        description="Key protecting ID numbers and phones (hash + encryption); unset = generated once into GISGOV_HOME/secret.key.",
    )
    page_limit: int = Field(default=1000, description="Default page size of /api/layers.")
    max_page_limit: int = Field(default=10000, description="Largest page size /api/layers accepts.")

    @field_validator("secret_key")
    @classmethod
    def _no_placeholder_secret(cls, v: str | None) -> str | None:
        if v is not None and (len(v) < 16 or v.lower() in {"changeme", "secret", "changethis"}):
            raise ValueError("GISGOV_SECRET_KEY must be at least 16 characters and not a placeholder")
        return v

    @property
    def home_abs(self) -> Path:
        return self.home.expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
