import pytest

from promo.errors import ConflictError, InputError, NotFound
from promo.release.hotfix import HotfixPlan, check_hotfix

TAGS = {"v1.2.3": "a" * 40, "v1.2.2": "b" * 40}


def test_a_hotfix_bumps_the_patch_of_the_tag():
    plan = HotfixPlan.of("v1.2.3")
    assert (plan.version, plan.branch, plan.version_tag) == ("1.2.4", "hotfix-1-2-4", "v1.2.4")
    assert check_hotfix(plan, TAGS, {"main": "c" * 40}, "1.3.0") == "a" * 40


@pytest.mark.parametrize("tag", ["v1.2", "1.2.3", "v01.2.3", "v1.2.3-rc.1", "hotfix"])
def test_malformed_tags_are_refused(tag):
    with pytest.raises(InputError, match="use the form vX.Y.Z"):
        HotfixPlan.of(tag)


def test_a_missing_tag_is_refused():
    with pytest.raises(NotFound, match="release tag v9.9.9 does not exist"):
        check_hotfix(HotfixPlan.of("v9.9.9"), TAGS, {}, "10.0.0")


def test_a_next_patch_already_released_is_refused():
    with pytest.raises(ConflictError, match="1.2.3 is already released as v1.2.3; hotfix the newest release"):
        check_hotfix(HotfixPlan.of("v1.2.2"), TAGS, {}, "1.3.0")


def test_an_existing_branch_is_refused_with_the_way_forward():
    with pytest.raises(ConflictError, match="branch hotfix-1-2-4 already exists; use it"):
        check_hotfix(HotfixPlan.of("v1.2.3"), TAGS, {"hotfix-1-2-4": "d" * 40}, "1.3.0")


@pytest.mark.parametrize("main", ["1.2.4", "1.2.3"])
def test_a_hotfix_colliding_with_mains_next_release_is_refused(main):
    """After releasing v1.2.3 main is 1.2.4: the seed's hotfix of v1.2.3 would pick the same version."""
    with pytest.raises(ConflictError, match="bump main's minor first"):
        check_hotfix(HotfixPlan.of("v1.2.3"), TAGS, {}, main)
