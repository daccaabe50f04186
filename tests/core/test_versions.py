import re

import pytest
import semver

from promo.errors import InputError
from promo.versions import (
    bump,
    is_downgrade,
    is_release_candidate,
    parse_release_tag,
    rc_version,
    release_of,
    sha_of,
    short_sha,
)


def test_rc_version_uses_seven_characters_when_the_sha_holds_a_letter():
    assert rc_version("0.2.0", "abc1234def" + "0" * 30) == "0.2.0-rc.abc1234"


def test_digits_only_sha_with_leading_zero_is_lengthened_until_it_holds_a_letter():
    sha = "0412345" + "9" * 3 + "b" + "0" * 29
    version = rc_version("1.0.0", sha)
    assert version == "1.0.0-rc.0412345999b"
    semver.Version.parse(version)


def test_digits_only_sha_without_leading_zero_is_lengthened_too_so_rcs_order_consistently():
    assert rc_version("1.0.0", "1234567a" + "0" * 32) == "1.0.0-rc.1234567a"


@pytest.mark.parametrize("seed", range(200))
def test_every_rc_is_valid_semver(seed):
    import random

    rng = random.Random(seed)
    alphabet = "0123456789" if seed % 2 else "0123456789abcdef"
    sha = "".join(rng.choice(alphabet) for _ in range(39)) + "f"
    version = rc_version("3.4.5", sha)
    parsed = semver.Version.parse(version)
    assert parsed.prerelease.startswith("rc.")
    assert re.search("[a-f]", parsed.prerelease.removeprefix("rc."))


def test_a_sha_of_forty_digits_cannot_be_an_rc():
    with pytest.raises(InputError, match="only of digits"):
        short_sha("0" * 40)


@pytest.mark.parametrize("base", ["1.2", "v1.2.3", "1.2.3-rc.1", "", "01.2.3"])
def test_bad_base_versions_are_refused_with_the_fix(base):
    with pytest.raises(InputError) as caught:
        rc_version(base, "abcdef1" + "0" * 33)
    assert "\n" not in str(caught.value) and ";" in str(caught.value)


@pytest.mark.parametrize("sha", ["xyz", "abc", "ABCDEFG; rm -rf /", ""])
def test_bad_shas_are_refused(sha):
    with pytest.raises(InputError, match="not a git commit SHA"):
        short_sha(sha)


def test_release_of_takes_the_base_from_the_rc():
    assert release_of("0.2.0-rc.abc1234") == "0.2.0"
    assert sha_of("0.2.0-rc.abc1234") == "abc1234"
    assert is_release_candidate("0.2.0-rc.abc1234")
    assert not is_release_candidate("0.2.0")
    with pytest.raises(InputError, match="not a release candidate"):
        release_of("0.2.0")


@pytest.mark.parametrize(
    ("version", "part", "expected"),
    [("1.2.3", "patch", "1.2.4"), ("1.2.3", "minor", "1.3.0"), ("1.2.3", "major", "2.0.0"), ("1.3.0-rc.1", "patch", "1.3.1")],
)
def test_bump(version, part, expected):
    assert bump(version, part) == expected


def test_bump_refuses_unknown_parts_listing_the_valid_ones():
    with pytest.raises(InputError, match="patch, minor, major"):
        bump("1.2.3", "build")


@pytest.mark.parametrize("tag", ["v1.2", "1.2.3", "v01.2.3", "v1.2.3-rc.1", "v1.2.3;ls"])
def test_release_tags_must_be_vxyz(tag):
    with pytest.raises(InputError, match="vX.Y.Z"):
        parse_release_tag(tag)
    assert parse_release_tag("v1.2.3") == "1.2.3"


def test_two_builds_of_one_base_may_replace_each_other_though_semver_orders_their_shas():
    older_text, newer_text = "0.1.0-rc.def5678", "0.1.0-rc.abc1234"  # SemVer compares the SHA text: abc < def
    assert semver.Version.parse(newer_text) < semver.Version.parse(older_text)
    assert not is_downgrade(older_text, newer_text) and not is_downgrade(newer_text, older_text)


@pytest.mark.parametrize(
    ("running", "incoming"),
    [("", "0.1.0-rc.abc1234"), ("0.1.0-rc.abc1234", "0.1.0"), ("0.1.0", "0.1.1-rc.abc1234"), ("0.9.9", "1.0.0")],
)
def test_moving_up_or_from_nothing_is_no_downgrade(running, incoming):
    assert not is_downgrade(running, incoming)


@pytest.mark.parametrize(
    ("running", "incoming"),
    [("0.1.0", "0.1.0-rc.abc1234"), ("0.2.0-rc.abc1234", "0.1.9-rc.def5678"), ("1.0.0", "0.9.9"), ("0.1.0", "")],
)
def test_a_lower_base_or_a_release_s_own_rc_is_a_downgrade(running, incoming):
    assert is_downgrade(running, incoming)


def test_a_hotfix_may_pass_environments_running_main_s_higher_rcs_while_above_what_prod_runs():
    main_rc, hotfix_rc = "0.2.0-rc.abc1234", "0.1.1-rc.def5678"
    assert not is_downgrade(main_rc, hotfix_rc, floor="0.1.0")  # prod runs 0.1.0: the hotfix is on its way
    assert not is_downgrade(main_rc, hotfix_rc, floor="")  # nothing released yet
    assert is_downgrade(main_rc, hotfix_rc, floor="0.1.1")  # 0.1.1 is released already: this would go back
    assert is_downgrade(main_rc, "0.1.0-rc.0a1b2c3", floor="0.1.0")  # a stale RC of what prod runs
    assert is_downgrade(main_rc, hotfix_rc)  # no floor (prod itself): never back


def test_a_running_revision_that_is_no_version_cannot_be_ordered():
    with pytest.raises(InputError, match="'main' is not SemVer"):
        is_downgrade("main", "0.1.0")
