"""The synthetic sample city (示例城, 合成数据): generate, write to a GeoPackage, load into PostGIS."""

from gisgov.sample.generate import DEFAULT_SEED, SampleCity, generate_city

__all__ = ["DEFAULT_SEED", "SampleCity", "generate_city"]
