"""Placeholder router (filled in by the geographic context work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
