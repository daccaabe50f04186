"""A stand-in for GitHub's REST API, for the sandbox only: it is not GitHub, and serves only what promo and a
reviewer use, from the sandbox's bare git repositories on disk.

Served (GitHub's paths, field names and status codes; every answer is checked against GitHub's published
description in tests/core/test_github_contract.py):

- ``GET /user``; pull requests: list (``state``, ``head=owner:branch``, ``base``), create, get, update/close;
  reviews: list, create (APPROVE, REQUEST_CHANGES, COMMENT; submitted at once, no pending drafts);
  ``PUT .../merge`` (``sha``, ``merge_method`` merge|squash, ``commit_title``/``commit_message``),
  ``PUT .../update-branch`` (``expected_head_sha``); issue comments and labels on a pull request;
- commit statuses (create, combined) and check runs (create, list for a ref), so tests can fail a required check;
- ``POST /git/refs``, ``GET /git/ref/{heads|tags}/...``, ``GET /git/tags/{sha}``, tags and releases (what
  ``promo.forges.github`` calls);
- ``GET``/``PATCH /repos/{o}/{r}`` (``allow_auto_merge``, seeded per repository by the settings), ``GET
  /branches/{b}`` and ``GET /rules/branches/{b}``: the required checks, where ``Protection.source`` shows them;
- ``POST /graphql`` for ``enablePullRequestAutoMerge`` (refused unless the repository allows auto-merge) and
  ``disablePullRequestAutoMerge`` only, their input as variables named like the input's fields;
- webhook deliveries of submitted reviews and closed pull requests, signed, to the settings' ``webhooks``
  (webhooks.py).

Protection (``world.Protection``): a pre-receive hook refuses direct pushes to the protected branch that change
its guarded paths, and a merge into it needs N approvals by writers, the required checks, and the ``sha`` it names.
Not served: forks, drafts' ready-for-review, pending reviews, review dismissal by hand, merge queues, rebase
merges, webhooks of other events or managed through the API, rate limits, GraphQL beyond the one mutation. Run it as
``python -m promo.local.standin_github CONFIG.json``; ``promo sandbox --pull-requests`` does so.
"""

from promo.local.standin_github.server import GitHubStandinServer, GitHubStandinSettings
from promo.local.standin_github.webhooks import Webhook
from promo.local.standin_github.world import Protection

__all__ = ["GitHubStandinServer", "GitHubStandinSettings", "Protection", "Webhook"]
