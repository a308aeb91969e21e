"""Placeholder router (filled in by the tiles work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
