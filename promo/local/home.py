"""Where promo keeps its local state: the promo home (``$PROMO_HOME``, default ``~/.promo``).

Its own module, with nothing but the standard library, because the `promo` console script reads it before it
decides whether to import anything heavier.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "PROMO_HOME"


def server_root() -> Path:
    """The local Prefect server's folder: its database, logs, state files, and those of its worker and warm process."""
    return (Path(os.environ.get(HOME_ENV) or Path.home() / ".promo") / "server").resolve()
