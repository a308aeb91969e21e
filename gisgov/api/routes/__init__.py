"""Routers, one module per capability; each exposes ``router`` (an ``APIRouter``)."""
