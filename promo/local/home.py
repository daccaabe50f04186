"""Where promo keeps its local state: the promo home (``$PROMO_HOME``, default ``~/.promo``).

Its own module, with nothing but the standard library: commands that do not run a flow read it without importing
Prefect.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "PROMO_HOME"


def server_root() -> Path:
    """The local Prefect server's folder: its database, logs, state files, and those of its worker."""
    return (Path(os.environ.get(HOME_ENV) or Path.home() / ".promo") / "server").resolve()
