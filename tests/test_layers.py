"""The layer catalog: loads, matches the real schema, refuses unsafe or inconsistent entries."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gisgov.config import get_settings
from gisgov.errors import InvalidInput
from gisgov.layers import Catalog, Layer, LayerForbidden, load_catalog
from gisgov.security.roles import Principal, Role

BASE = {
    "name": "x",
    "title": {"zh": "测", "en": "X"},
    "table": "resident",
    "code_pattern": "^[0-9]+$",
    "geometry_kind": "point",
    "personal": True,
    "scope_by": "household",
    "code_column": None,
    "name_column": None,
}


def _principal(role: Role, scope: str = "") -> Principal:
    return Principal(user_id=1, username="u", display_name="u", role=role, scope_code=scope)


def test_shipped_catalog_has_the_levels_in_order():
    cat = load_catalog(get_settings().layers_dir)
    names = [lyr.name for lyr in cat]
    assert names[:5] == ["street", "community", "grid", "compound", "building"]
    assert {"facility", "road", "resident"} <= set(names)
    assert [lyr.name for lyr in cat if lyr.on_map] == ["street", "community", "grid", "compound"]
    assert cat.get("resident").min_role == "grid_worker"
    assert "resident" not in [lyr.name for lyr in cat.visible("public")]
    assert "resident" in [lyr.name for lyr in cat.visible("grid_worker")]


def test_shipped_catalog_scopes_every_layer_and_marks_residents_personal():
    cat = load_catalog(get_settings().layers_dir)
    rules = {lyr.name: (lyr.scope_by, lyr.personal) for lyr in cat}
    assert rules == {
        "street": ("code", False),
        "community": ("code", False),
        "grid": ("code", False),
        "compound": ("code", False),
        "building": ("code", False),
        "facility": ("community_code", False),
        "road": ("all", False),
        "resident": ("household", True),
    }


@pytest.mark.parametrize(
    "role,scope,sees",
    [
        (Role.admin, "", True),
        (Role.street_leader, "340104001", True),
        (Role.community_staff, "340104001001", True),
        (Role.grid_worker, "340104001001001", True),
        (Role.planner, "340104001", False),
        (Role.viewer, "340104001", False),
    ],
)
def test_resident_layer_needs_read_personal(role, scope, sees):
    cat = load_catalog(get_settings().layers_dir)
    p = _principal(role, scope)
    assert ("resident" in [lyr.name for lyr in cat.visible_for(p)]) is sees
    assert {"street", "community", "grid", "compound", "building", "facility", "road"} <= {
        lyr.name for lyr in cat.visible_for(p)
    }
    if sees:
        assert cat.for_principal("resident", p).name == "resident"
    else:
        with pytest.raises(LayerForbidden):
            cat.for_principal("resident", p)
    # the permission is checked on its own, not only through the role's catalog level
    lowered = cat.get("resident").model_copy(update={"min_role": "public"})
    assert lowered.allowed(p) is sees


def test_personal_tables_must_be_personal_scoped_and_nameless():
    with pytest.raises(ValueError, match="personal_layer"):
        Layer.model_validate({**BASE, "personal": False, "scope_by": "area"})
    with pytest.raises(ValueError, match="personal_layer"):
        Layer.model_validate({**BASE, "scope_by": "area"})
    with pytest.raises(ValueError, match="personal_layer"):
        Layer.model_validate({**BASE, "name_column": "name"})
    with pytest.raises(ValueError, match="layer_scope"):
        Layer.model_validate({**BASE, "table": "road_edge", "personal": False, "scope_by": "code"})
    assert (
        Layer.model_validate({**BASE, "table": "road_edge", "personal": False, "scope_by": "area"}).scope_by == "area"
    )


def test_every_catalog_column_exists_in_the_schema(conn):
    cat = load_catalog(get_settings().layers_dir)
    for lyr in cat:
        cols = {
            r[0]
            for r in conn.execute(
                text("SELECT column_name FROM information_schema.columns WHERE table_name = :t"), {"t": lyr.table}
            )
        }
        assert cols, f"layer {lyr.name}: table {lyr.table} missing"
        wanted = {
            lyr.id_column,
            lyr.code_column,
            lyr.name_column,
            lyr.geometry,
            lyr.geometry_fallback,
            *lyr.properties,
            *(r.column for r in lyr.refs),
        } - {None}
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
    (tmp_path / "layer-x.yaml").write_text(
        "layer:\n  name: x\n  title: {zh: 测, en: X}\n  table: facility\n"
        "  code_pattern: '^[0-9]+$'\n  geometry_kind: point\n"
    )
    assert [lyr.name for lyr in load_catalog(tmp_path)] == ["x"]
    (tmp_path / "layer-bad.yaml").write_text("layer:\n  name: y\n  table: resident\n")
    with pytest.raises(InvalidInput, match=r"layer-bad\.yaml"):
        load_catalog(tmp_path)


def test_code_check_names_the_rule():
    lyr = load_catalog(get_settings().layers_dir).get("grid")
    assert lyr.check_code("340104001001001") == "340104001001001"
    with pytest.raises(InvalidInput, match=r"invalid grid code '3401'.*\^\[0-9\]\{15\}\$"):
        lyr.check_code("3401")
