"""ID numbers: GB 11643 check digit, never in clear, masked; key file and sample GeoPackage private (0600)."""

from __future__ import annotations

import os
import stat

import pytest

from gisgov.config import Settings
from gisgov.security.pii import (
    ID_HIDDEN,
    Vault,
    _load_key,
    id_check_digit,
    id_problem,
    is_valid_id,
    mask_id,
    mask_id_for,
    mask_phone,
)

# The standard's worked example: 11010519491231002X.
EXAMPLE = "11010519491231002X"


def test_check_digit_of_the_standard_example():
    assert id_check_digit(EXAMPLE[:17]) == "X"
    assert is_valid_id(EXAMPLE)
    assert is_valid_id(EXAMPLE.lower())


@pytest.mark.parametrize(
    "bad, why",
    [
        ("110105194912310021", "校验位"),
        ("11010519491331002X", "出生日期"),  # month 13
        ("1101051949123100", "18位"),
    ],
)
def test_malformed_ids_explained(bad, why):
    assert why in id_problem(bad)


def test_vault_roundtrip_and_hash_stability():
    v = Vault(b"k" * 32)
    p = v.protect_id(EXAMPLE)
    assert EXAMPLE.encode() not in p.cipher
    assert v.decrypt(p.cipher) == EXAMPLE
    assert p.hash == v.protect_id(EXAMPLE.lower()).hash  # same person, same hash
    assert p.cipher != v.protect_id(EXAMPLE).cipher  # random nonce
    assert Vault(b"j" * 32).digest(EXAMPLE) != p.hash  # keyed
    assert p.last4 == "002X"


def test_masks():
    assert mask_id("002X") == "**************002X"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone(None) is None


def test_mask_for_outputs_with_birth_year_shows_no_id_character():
    assert mask_id_for("002X", birth_shown=True) == ID_HIDDEN == "*" * 18
    assert mask_id_for("002X", birth_shown=False) == "**************002X"
    assert mask_id_for(None, birth_shown=True) is None


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_key_file_is_private_and_stable(tmp_path):
    old = os.umask(0o022)  # a permissive umask must not matter
    try:
        s = Settings(home=tmp_path / "home")
        k1 = _load_key(s)
        key = tmp_path / "home" / "secret.key"
        assert _mode(key) == 0o600 and len(k1) == 32
        assert _load_key(s) == k1  # generated once
        assert [p.name for p in key.parent.iterdir()] == ["secret.key"]  # no temporary file left behind
        os.chmod(key, 0o644)  # an old installation's readable key file is tightened
        assert _load_key(s) == k1 and _mode(key) == 0o600
    finally:
        os.umask(old)
    assert Vault.from_settings(Settings(home=tmp_path / "other", secret_key="x" * 20)).digest("a")  # no file then
    assert not (tmp_path / "other" / "secret.key").exists()


def test_sample_geopackage_is_private(tmp_path):
    from gisgov.sample import generate_city
    from gisgov.sample.gpkg import read_gpkg, write_gpkg

    old = os.umask(0o022)
    try:
        city = generate_city(seed=3, scale=0.02)
        p = write_gpkg(city, tmp_path / "out" / "sample_city.gpkg")
        assert _mode(p) == 0o600
        assert [x.name for x in p.parent.iterdir()] == ["sample_city.gpkg"]  # staging folder removed
        p2 = write_gpkg(city, p)  # replacing keeps it private
        assert _mode(p2) == 0o600
        assert len(read_gpkg(p2).residents) == len(city.residents)
    finally:
        os.umask(old)
