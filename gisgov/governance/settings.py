"""Settings of staff and compound rules (``GISGOV_STAFF_*`` / ``GISGOV_COMPOUND_*`` environment variables)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GovernanceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GISGOV_", extra="ignore")

    staff_max_caseload: float = Field(
        default=500.0,
        gt=0,
        description="Households per 专职网格员 (full-time grid worker) above which a grid's caseload is flagged. "
        "Default from the source reports: grids are drawn '按照300-500户' (300-500 households) and "
        "staffed 一格三员 with one 专职网格员, so one full-time worker serves at most 500 households.",
    )
    compound_rules: str | None = Field(
        default=None, description="YAML file with the compound rules (default: gisgov/governance/compound_rules.yaml)."
    )
    staff_import_max_rows: int = Field(default=5000, ge=1, description="Most data rows a staff XLSX import may hold.")


@lru_cache
def get_governance_settings() -> GovernanceSettings:
    return GovernanceSettings()
