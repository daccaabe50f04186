"""A real local OCI registry (Debian's ``docker-registry``, the CNCF distribution server) for tests and sandboxes.

Talking to the genuine server catches what a fake would hide: upload Location handling, digest checks,
pagination, auth challenges. It runs as a ``LocalServer``: detached, with its own log file, and only ever stopped
by the PID it was started with (``promo sandbox DIR --stop`` finds it again through its state file).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from promo.errors import ToolError
from promo.local.processes import LocalServer
from promo.local.processes import free_port as _free_port  # tests take free ports from here

EXECUTABLE = "docker-registry"


@dataclass(frozen=True)
class RegistryServer(LocalServer):
    """A running ``docker-registry serve`` on 127.0.0.1, storing under ``root``."""

    program = EXECUTABLE
    config_name = "config.yml"
    log_name = "registry.log"
    ready_path = "/v2/"  # 200, or 401 with auth: either way it serves
    start_fix = "; a busy port or a bad htpasswd file are the usual causes"

    @classmethod
    def start(cls, root_dir: Path, *, port: int | None = None, htpasswd: Path | None = None) -> RegistryServer:
        """Start a registry on ``port`` (a free one if None) and return once ``GET /v2/`` answers."""
        executable = shutil.which(EXECUTABLE)
        if executable is None:
            raise ToolError(
                f"{EXECUTABLE} not found", f"install it with `apt-get install {EXECUTABLE}` (or run `make setup`)"
            )
        root_dir = root_dir.resolve()
        root_dir.mkdir(parents=True, exist_ok=True)
        unstarted = cls(pid=0, port=port or _free_port(), root=root_dir)
        unstarted.config_path.write_text(json.dumps(unstarted._config(htpasswd), indent=2))
        return cls._spawn(root_dir, unstarted.port, [executable, "serve", str(unstarted.config_path)])

    def _runs_program(self, argv: list[bytes]) -> bool:
        return Path(os.fsdecode(argv[0])).name == EXECUTABLE

    def _config(self, htpasswd: Path | None) -> dict[str, object]:
        # JSON is YAML, so the config needs no escaping of paths.
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}, "delete": {"enabled": True}},
            # A fixed per-instance upload-state secret; without one the server logs a warning at every start.
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        if htpasswd is not None:
            config["auth"] = {"htpasswd": {"realm": "promo", "path": str(htpasswd.resolve())}}
        return config
