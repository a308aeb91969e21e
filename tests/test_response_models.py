"""Every operation of the OpenAPI schema documents its answers: a 2xx body with a schema (JSON with a
model — ``$ref`` / properties, or a list of them — or a declared non-JSON media type such as GeoJSON
files, CSV, XLSX, HTML or images), every documented 4xx with the one error model (``ErrorBody``, 422:
``ValidationErrorBody``), and a description on every field of the models the 2xx answers use.

Parametrized by operation, so a failure names the route."""

from __future__ import annotations

import pytest

from gisgov.api.app import create_app
from gisgov.config import Settings

SPEC = create_app(Settings()).openapi()
SCHEMAS = SPEC["components"]["schemas"]
OPS = [
    (method.upper(), path, op)
    for path, item in SPEC["paths"].items()
    for method, op in item.items()
    if isinstance(op, dict) and "responses" in op
]
IDS = [f"{m} {p}" for m, p, _ in OPS]
ERROR_MODELS = {"ErrorBody", "ValidationErrorBody"}


def _ref_name(schema: dict) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def _is_model(schema: dict) -> bool:
    if schema.get("$ref") or schema.get("properties"):
        return True
    if schema.get("type") == "array":
        return _is_model(schema.get("items") or {})
    return any(_is_model(s) for s in schema.get("anyOf", []) + schema.get("oneOf", []))


def _ok_answers(op: dict) -> dict:
    return {c: r for c, r in op["responses"].items() if c.isdigit() and 200 <= int(c) < 300}


def test_the_schema_has_operations():
    assert len(OPS) > 40


@pytest.mark.parametrize(("method", "path", "op"), OPS, ids=IDS)
def test_2xx_body_documented(method, path, op):
    answers = _ok_answers(op)
    assert answers, f"{method} {path}: no 2xx answer documented"
    for code, answer in answers.items():
        content = answer.get("content") or {}
        assert content, f"{method} {path} {code}: no body documented"
        for media, part in content.items():
            schema = part.get("schema") or {}
            if media == "application/json":
                assert _is_model(schema), f"{method} {path} {code}: JSON body without a model: {schema}"
            else:
                assert "/" in media, (method, path, media)
                if media.endswith("+json"):  # GeoJSON answers name their model too
                    assert _is_model(schema), f"{method} {path} {code} {media}: without a model"


@pytest.mark.parametrize(("method", "path", "op"), OPS, ids=IDS)
def test_4xx_use_the_error_model(method, path, op):
    for code, answer in op["responses"].items():
        if not (code.isdigit() and 400 <= int(code) < 600):
            continue
        schema = ((answer.get("content") or {}).get("application/json") or {}).get("schema") or {}
        name = _ref_name(schema)
        assert name in ERROR_MODELS, f"{method} {path} {code}: error answer not the error model: {schema}"
        if code == "422":
            assert name == "ValidationErrorBody", (method, path)


def _models_of(schema: dict, seen: set[str]) -> None:
    name = _ref_name(schema)
    if name and name not in seen:
        seen.add(name)
        _models_of(SCHEMAS[name], seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _models_of(schema[key], seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for s in schema.get(key, []):
            _models_of(s, seen)
    for prop in (schema.get("properties") or {}).values():
        _models_of(prop, seen)


@pytest.mark.parametrize(("method", "path", "op"), OPS, ids=IDS)
def test_fields_are_described(method, path, op):
    models: set[str] = set()
    for answer in _ok_answers(op).values():
        for part in (answer.get("content") or {}).values():
            _models_of(part.get("schema") or {}, models)
    missing = [
        f"{name}.{field}"
        for name in sorted(models)
        for field, prop in (SCHEMAS[name].get("properties") or {}).items()
        if not prop.get("description")
    ]
    assert not missing, f"{method} {path}: fields without a description: {missing}"


@pytest.mark.parametrize(("method", "path", "op"), OPS, ids=IDS)
def test_json_models_have_examples(method, path, op):
    for answer in _ok_answers(op).values():
        part = (answer.get("content") or {}).get("application/json") or {}
        name = _ref_name(part.get("schema") or {})
        if name:
            s = SCHEMAS[name]
            assert s.get("examples") or part.get("example") or part.get("examples"), f"{method} {path}: {name}"


def test_error_model_in_the_schema():
    props = SCHEMAS["ErrorBody"]["properties"]
    assert {"detail", "error", "code", "message_zh", "message_en", "details"} <= set(props)
    assert {"detail", "error", "code", "message_zh", "message_en"} <= set(SCHEMAS["ErrorBody"]["required"])
    assert "errors" in SCHEMAS["ValidationErrorBody"]["properties"]
