"""gisgov: a GIS platform for grassroots grid governance (网格化管理 / 基层治理) on PostGIS."""

__version__ = "0.1.0"
