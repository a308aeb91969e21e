"""The roll-up's personal-data scan: real phone and ID numbers are found wherever they sit, a checksum's
digits are not taken for one (a signed export was refused now and then when its hash held 11 digits in a row)."""

from __future__ import annotations

from gisgov.rollup.figures import personal_data


def doc(**manifest):
    return {"format": "gisgov-rollup/1", "manifest": manifest, "units": []}


def test_a_hash_with_a_run_of_digits_is_not_a_phone_number():
    digest = "a" * 20 + "18612345678" + "b" * 33  # 64 hex characters, 11 digits starting 186 inside
    assert personal_data(doc(sha256=digest, signature="0" * 10 + "13912345678" + "f" * 43)) == []


def test_phone_and_id_numbers_are_still_found_next_to_words_and_in_names():
    found = personal_data(doc(note="联系电话13912345678", city_name="tel:18612345678 张三"))
    assert sorted(found) == ["mobile number 139…78", "mobile number 186…78"]
    assert personal_data(doc(note="身份证 11010519491231002X")) == ["ID number 110…2X"]


def test_a_phone_number_inside_a_short_hex_like_word_is_still_found():
    # only long hex tokens (32+, as hashes are) are set aside
    assert personal_data(doc(note="cafe13912345678")) == ["mobile number 139…78"]


def test_the_tests_own_scanner_sets_hashes_aside_too():
    from pii_scanner import find_clear_pii

    digest = "a" * 20 + "19012345683" + "b" * 33
    assert find_clear_pii(f'{{"sha256": "{digest}"}}') == []
    assert find_clear_pii('{"note": "电话19012345683"}') == [("mobile", "19012345683")]
