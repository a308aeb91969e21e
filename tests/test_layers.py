"""The layer catalog: loads, matches the real schema, refuses unsafe or inconsistent entries."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gisgov.config import get_settings
from gisgov.errors import InvalidInput
from gisgov.layers import Catalog, Layer, load_catalog

BASE = {"name": "x", "title": {"zh": "测", "en": "X"}, "table": "resident", "code_pattern": "^[0-9]+$",
        "geometry_kind": "point"}


def test_shipped_catalog_has_the_levels_in_order():
    cat = load_catalog(get_settings().layers_dir)
    names = [lyr.name for lyr in cat]
    assert names[:5] == ["street", "community", "grid", "compound", "building"]
    assert {"facility", "road", "resident"} <= set(names)
    assert [lyr.name for lyr in cat if lyr.on_map] == ["street", "community", "grid", "compound"]
    assert cat.get("resident").min_role == "grid_worker"
    assert "resident" not in [lyr.name for lyr in cat.visible("public")]
    assert "resident" in [lyr.name for lyr in cat.visible("grid_worker")]


def test_every_catalog_column_exists_in_the_schema(conn):
    cat = load_catalog(get_settings().layers_dir)
    for lyr in cat:
        cols = {r[0] for r in conn.execute(
            text("SELECT column_name FROM information_schema.columns WHERE table_name = :t"), {"t": lyr.table})}
        assert cols, f"layer {lyr.name}: table {lyr.table} missing"
        wanted = {lyr.id_column, lyr.code_column, lyr.name_column, lyr.geometry, lyr.geometry_fallback,
                  *lyr.properties, *(r.column for r in lyr.refs)} - {None}
        assert wanted <= cols, f"layer {lyr.name}: columns {wanted - cols} not in table {lyr.table}"


@pytest.mark.parametrize("column", ["id_hash", "id_cipher", "id_last4", "phone_cipher"])
def test_protected_columns_can_never_be_exposed(column):
    with pytest.raises(ValueError, match="never_expose_ids"):
        Layer.model_validate({**BASE, "properties": ["gender", column]})


def test_identifiers_must_be_plain_names():
    with pytest.raises(ValueError):
        Layer.model_validate({**BASE, "table": "resident; DROP TABLE street"})
    with pytest.raises(ValueError):
        Layer.model_validate({**BASE, "properties": ['name" FROM street --']})


def test_reserved_names_and_property_clashes_are_refused():
    with pytest.raises(ValueError, match="reserved"):
        Layer.model_validate({**BASE, "name": "layers"})
    with pytest.raises(ValueError, match="clash"):
        Layer.model_validate({**BASE, "properties": ["households"]})
    with pytest.raises(ValueError, match="anchored"):
        Layer.model_validate({**BASE, "code_pattern": "[0-9]+"})


def test_catalog_refuses_unknown_parent_and_duplicates():
    child = Layer.model_validate({**BASE, "parent": {"level": "nowhere", "column": "household_id"}})
    with pytest.raises(InvalidInput, match="unknown layer nowhere"):
        Catalog([child])
    plain = Layer.model_validate(BASE)
    with pytest.raises(InvalidInput, match="duplicate"):
        Catalog([plain, plain])


def test_loader_reads_only_layer_files_and_names_a_bad_one(tmp_path):
    (tmp_path / "other.yaml").write_text("circles: [5, 10, 15\n")  # another catalog, even a broken one
    (tmp_path / "layer-x.yaml").write_text("layer:\n  name: x\n  title: {zh: 测, en: X}\n  table: resident\n"
                                           "  code_pattern: '^[0-9]+$'\n  geometry_kind: point\n")
    assert [lyr.name for lyr in load_catalog(tmp_path)] == ["x"]
    (tmp_path / "layer-bad.yaml").write_text("layer:\n  name: y\n  table: resident\n")
    with pytest.raises(InvalidInput, match="layer-bad.yaml"):
        load_catalog(tmp_path)


def test_code_check_names_the_rule():
    lyr = load_catalog(get_settings().layers_dir).get("grid")
    assert lyr.check_code("340104001001001") == "340104001001001"
    with pytest.raises(InvalidInput, match=r"invalid grid code '3401'.*\^\[0-9\]\{15\}\$"):
        lyr.check_code("3401")
