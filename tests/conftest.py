"""Fixtures shared by every tier, and one rule: promo is imported under one name only.

The repository keeps flows/, tasks/ and deployments/ at its top and installs them as ``promo.flows``,
``promo.tasks`` and ``promo.deployments``. pytest puts the repository's root on ``sys.path`` (tests/ is a package), so
``import tasks`` would load a second copy of a module: a patch of ``tasks.x`` would then miss the ``promo.tasks.x``
that flows call. The finder below makes that second name impossible.
"""

from __future__ import annotations

import importlib.abc
import os
import sys

REPO_FOLDERS = frozenset({"flows", "tasks", "deployments"})


class _OneImportName(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 (the finder protocol)
        if fullname.partition(".")[0] in REPO_FOLDERS:
            raise ModuleNotFoundError(
                f"{fullname!r} is a repository folder, not a module: import promo.{fullname} (the installed name)",
                name=fullname,
            )
        return None


sys.meta_path.insert(0, _OneImportName())

# Sandboxes made by tests (and by the `promo` processes they start) move at once: a test waits for promo, not for the
# stand-in's clock (promo.local.standin_apps.PACES). tests/core/test_standin.py sets its own times.
os.environ.setdefault("PROMO_STANDIN_PACE", "test")

pytest_plugins = [
    "tests.fixtures.registry",
    "tests.fixtures.gitrepos",
    "tests.fixtures.history_script",
    "tests.fixtures.sandbox",
]
