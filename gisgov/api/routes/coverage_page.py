"""Placeholder router (filled in by the coverage_page work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
