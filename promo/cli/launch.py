"""The `promo` console script. A flow command goes to the warm process when `promo server start` runs one (Prefect
and the flows already imported there: ~2 s less per command, see promo.local.warm); anything else, or a command the
warm process will not take, runs in this process.

Only the standard library and two small promo modules are imported before that choice.
"""

from __future__ import annotations

import os
import sys

from promo.errors import PromoError
from promo.local.handoff import hand_off
from promo.local.home import server_root

# The commands that run a flow: promo.cli.main registers each through ``flow_command``, which checks it is listed.
FLOW_COMMANDS = frozenset(
    {"publish-dev", "promote-test", "promote-stage", "release-prod", "rollback", "hotfix", "bump-version", "demo"}
)
IN_PROCESS_ENV = "PROMO_IN_PROCESS"  # =1: run flow commands here even when a warm process runs


def main() -> None:
    if sys.argv[1:2] and sys.argv[1] in FLOW_COMMANDS and os.environ.get(IN_PROCESS_ENV) != "1":
        try:
            status = hand_off(sys.argv[1:], server_root())
        except PromoError as error:
            from promo.cli.main import fail

            fail(error)
        if status is not None:
            sys.exit(status)
    from promo.cli.main import main as run_here

    run_here()
