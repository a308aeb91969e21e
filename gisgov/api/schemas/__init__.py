"""Pydantic models of the API's answers (one module per router; shared GeoJSON models in :mod:`.geojson`)."""
