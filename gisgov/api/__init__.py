"""The HTTP API (FastAPI). Routers live in ``gisgov.api.routes``; ``create_app`` assembles them."""
