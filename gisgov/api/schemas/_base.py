"""The base of the API's answer models: members beyond the declared ones are kept (a response model
documents an answer, it must never drop what a page reads)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Answer(BaseModel):
    """An answer object: declared members documented, others kept as they are."""

    model_config = ConfigDict(extra="allow")


def example(*examples: dict[str, Any]) -> ConfigDict:
    """``model_config`` of an answer model with its examples."""
    return ConfigDict(extra="allow", json_schema_extra={"examples": list(examples)})
