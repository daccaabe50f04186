"""The app's own view of a deployment: a URL per cluster that answers with the chart version it runs.

The body is the version as plain text (``0.1.0-rc.abc1234``) or a JSON object with a ``version`` or ``chartVersion``
field: what an endpoint serving the ``CHART_VERSION`` the sample chart puts into every container answers. Another
version means old pods still serve (a rollout in progress), so it is "not yet", as are refused connections and 5xx;
a 4xx is a wrong URL or a broken app, and waiting longer will not change it.
"""

from __future__ import annotations

import json
import re

import httpx

from promo.errors import ConfigError
from promo.registry.oci import shared_tls_context
from promo.verify.observation import Observation

TIMEOUT_SECONDS = 10.0
_VERSION_FIELDS = ("version", "chartVersion")
_PLAIN_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,127}")  # a chart version's characters, nothing else


def version_url(template: str, app: str, env: str, cluster: str) -> str:
    try:
        return template.format(app=app, env=env, cluster=cluster)
    except (KeyError, IndexError, ValueError):
        raise ConfigError(
            f"verify.http.url {template!r} is not a valid URL template",
            "use only {app}, {env} and {cluster}, e.g. https://{cluster}.example.com/{app}/version",
        ) from None


def new_client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=True, verify=shared_tls_context())


def check_version(client: httpx.Client, url: str, version: str) -> Observation:
    """What ``url`` says about the chart version it serves, compared with ``version``."""
    try:
        response = client.get(url, headers={"Accept": "application/json, text/plain"})
    except httpx.RequestError as exc:  # refused, reset, timed out, redirected in circles: not serving yet
        return Observation.pending(f"{url} unreachable: {type(exc).__name__}")
    status = response.status_code
    if status >= 500 or status == 429:
        return Observation.pending(f"{url} answered {status}")
    if status >= 400:
        return Observation.failed(f"{url} answered {status}")
    if status >= 300:  # a redirect httpx did not follow (no Location): no version to read
        return Observation.pending(f"{url} answered {status}")
    served = served_version(response.text)
    if served == version:
        return Observation.healthy(f"{url} serves {version}")
    if served is None:
        start = " ".join(response.text.split())[:60]
        return Observation.pending(f"{url} answered {status} without a chart version (body starts {start!r})")
    return Observation.pending(f"{url} serves {served}, not yet {version}")


def served_version(body: str) -> str | None:
    """The version in a plain-text body, or in a JSON object's ``version``/``chartVersion`` field."""
    text = body.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for field in _VERSION_FIELDS:
            if isinstance(data.get(field), str):
                return data[field].strip()
        return None
    if isinstance(data, str):  # a JSON string: "0.1.0"
        return data.strip()
    return text if _PLAIN_VERSION.fullmatch(text) else None
