"""promo's modules load under one name: ``promo.tasks.x``, never also ``tasks.x`` (two module objects, two sets of
retry policies: a test patching one would leave the other, which the flows call, untouched)."""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.conftest import REPO_FOLDERS


@pytest.mark.parametrize("folder", sorted(REPO_FOLDERS))
def test_a_repository_folder_is_not_importable_as_a_top_level_module(folder):
    with pytest.raises(ModuleNotFoundError, match=f"import promo.{folder}"):
        importlib.import_module(folder)


def test_no_top_level_copy_of_a_promo_module_is_loaded():
    importlib.import_module("promo.tasks.retry")
    importlib.import_module("promo.flows.promote")
    copies = sorted(name for name in sys.modules if name.partition(".")[0] in REPO_FOLDERS)
    assert copies == []
