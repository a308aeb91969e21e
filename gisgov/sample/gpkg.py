"""The sample city as one GeoPackage: every layer (spatial or not) plus a ``dataset`` table.

The GeoPackage holds the synthetic ID numbers and phones in clear (they are made up); the database
never does (see :mod:`gisgov.sample.load`). Each layer and the file itself carry a description
saying the data are synthetic (合成数据). Because it holds names, ID numbers and phones, the file is
written 0600 (built in a private 0700 folder, then moved into place).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from gisgov.sample.generate import LAYERS, NOTE, SampleCity

META_LAYER = "dataset"


def write_gpkg(city: SampleCity, path: str | os.PathLike, on_layer: Callable[[str], None] | None = None) -> Path:
    """Write all layers to ``path`` (replacing the file); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.stem}.part-", dir=path.parent))  # 0700: never readable by others
    tmp = stage / path.name
    desc = f"{city.meta.get('name', 'sample city')} — {NOTE}"
    meta = pd.DataFrame(
        {"key": list(city.meta), "value": [json.dumps(v, ensure_ascii=False) for v in city.meta.values()]}
    )
    try:
        pyogrio.write_dataframe(
            meta,
            tmp,
            layer=META_LAYER,
            driver="GPKG",
            dataset_metadata={"DESCRIPTION": desc},
            layer_metadata={"DESCRIPTION": desc},
        )
        for name in LAYERS:
            if on_layer:
                on_layer(name)
            df = getattr(city, name)
            pyogrio.write_dataframe(
                df, tmp, layer=name, driver="GPKG", layer_metadata={"DESCRIPTION": f"{name}: {NOTE}"}
            )
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return path


def read_gpkg(path: str | os.PathLike) -> SampleCity:
    """Read a GeoPackage written by :func:`write_gpkg` back into a :class:`SampleCity`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"sample GeoPackage not found: {path}")
    have = {row[0] for row in pyogrio.list_layers(path)}
    missing = [n for n in (META_LAYER, *LAYERS) if n not in have]
    if missing:
        raise ValueError(
            f"{path} is not a gisgov sample GeoPackage: layers {missing} missing (rule: sample_gpkg_layers)"
        )
    meta_df = pyogrio.read_dataframe(path, layer=META_LAYER)
    meta = {k: json.loads(v) for k, v in zip(meta_df["key"], meta_df["value"], strict=False)}
    layers = {}
    for name in LAYERS:
        df = pyogrio.read_dataframe(path, layer=name)
        if isinstance(df, gpd.GeoDataFrame) and df.geometry.name != "geometry":
            df = df.rename_geometry("geometry")
        layers[name] = df
    return SampleCity(**layers, meta=meta)
