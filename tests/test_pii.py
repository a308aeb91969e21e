"""ID numbers: GB 11643 check digit, never in clear, masked."""

from __future__ import annotations

import pytest

from gisgov.security.pii import Vault, id_check_digit, id_problem, is_valid_id, mask_id, mask_phone

# The standard's worked example: 11010519491231002X.
EXAMPLE = "11010519491231002X"


def test_check_digit_of_the_standard_example():
    assert id_check_digit(EXAMPLE[:17]) == "X"
    assert is_valid_id(EXAMPLE)
    assert is_valid_id(EXAMPLE.lower())


@pytest.mark.parametrize("bad, why", [
    ("110105194912310021", "校验位"),
    ("11010519491331002X", "格式"),
    ("1101051949123100", "18位"),
])
def test_malformed_ids_explained(bad, why):
    assert why in id_problem(bad)


def test_vault_roundtrip_and_hash_stability():
    v = Vault(b"k" * 32)
    p = v.protect_id(EXAMPLE)
    assert EXAMPLE.encode() not in p.cipher
    assert v.decrypt(p.cipher) == EXAMPLE
    assert p.hash == v.protect_id(EXAMPLE.lower()).hash  # same person, same hash
    assert p.cipher != v.protect_id(EXAMPLE).cipher      # random nonce
    assert Vault(b"j" * 32).digest(EXAMPLE) != p.hash    # keyed
    assert p.last4 == "002X"


def test_masks():
    assert mask_id("002X") == "**************002X"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone(None) is None
