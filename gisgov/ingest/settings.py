"""Settings of the import/export capability (``GISGOV_INGEST_*`` environment variables)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GISGOV_INGEST_", extra="ignore")

    dwelling_m2: float = Field(
        default=95.0,
        gt=0,
        description="Average gross floor area per household (m²) for household estimates. Default from the "
        "2020 census (第七次全国人口普查): urban per-capita housing floor area 36.52 m² × 2.62 persons "
        "per family household ≈ 95.7 m².",
    )
    default_floors: int = Field(
        default=1,
        ge=1,
        description="Floors assumed when a building has neither floors nor height (a lower bound; flagged as estimated).",
    )
    storey_height_m: float = Field(default=3.0, gt=0, description="Metres per storey when only a height is known.")
    clip_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="--repair clips a child polygon to its parent when at least this share of its area lies inside.",
    )
    max_upload_mb: float = Field(default=200.0, gt=0, description="Largest file POST /api/import accepts (MB).")
    max_unzipped_mb: float = Field(
        default=1000.0,
        gt=0,
        description="Largest total uncompressed size of an uploaded zip (zipped Shapefile, XLSX) "
        "(MB); larger answers 413 before anything is read.",
    )
    max_zip_ratio: float = Field(
        default=100.0,
        gt=1,
        description="Largest ratio of uncompressed size to archive size of an uploaded zip "
        "expanding to more than 10 MB; higher answers 413 (zip bomb).",
    )
    max_zip_members: int = Field(
        default=1000, ge=1, description="Most files an uploaded zip may hold; more answers 413."
    )
    sync_limit_mb: float = Field(
        default=2.0,
        ge=0,
        description="POST /api/import answers with the report directly up to this size; larger "
        "files run as a background job (202 + job URL).",
    )
    export_keep_hours: float = Field(
        default=24.0, gt=0, description="A background export's file is kept this long after it finished, then deleted."
    )
    export_stale_hours: float = Field(
        default=6.0,
        gt=0,
        description="A background export still queued/running after this long (a stopped server) is marked failed.",
    )
    export_workers: int = Field(
        default=2, ge=1, le=16, description="Background exports running at the same time per server process."
    )
    osm_residential: tuple[str, ...] = Field(
        default=(
            "yes",
            "residential",
            "apartments",
            "house",
            "detached",
            "semidetached_house",
            "terrace",
            "dormitory",
            "bungalow",
        ),
        description="OSM building=* values whose households are estimated (others stay unknown).",
    )
    # overlap and gap checks between siblings at import (gisgov.ingest.siblings)
    overlap_m2: float = Field(
        default=1.0, ge=0, description="Overlaps between siblings up to this area (m²) are tolerated."
    )
    overlap_share: float = Field(
        default=0.001,
        ge=0,
        le=1,
        description="Overlaps up to this share of the smaller sibling's area are tolerated (0.001 = 0.1 %).",
    )
    gap_m2: float = Field(
        default=1.0, ge=0, description="Gaps inside a parent (uncovered by its children) above this area are reported."
    )
    gap_share: float = Field(
        default=0.001,
        ge=0,
        le=1,
        description="A gap above this share of its parent's area is reported on its own line; smaller ones "
        "(slivers along hand-drawn edges) are summed up in one line per parent.",
    )


@lru_cache
def get_ingest_settings() -> IngestSettings:
    return IngestSettings()
