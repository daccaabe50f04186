"""The stand-in's ``POST /graphql``: ``enablePullRequestAutoMerge`` and ``disablePullRequestAutoMerge`` only, their
input given as variables named like the input's fields. GraphQL answers 200 with ``errors``, as GitHub does."""

from __future__ import annotations

from typing import Any

from promo.local.standin_github.settings import AUTO_MERGE_REFUSED, allow_auto_merge
from promo.local.standin_github.world import ApiError, World

_SERVED = ("enablePullRequestAutoMerge", "disablePullRequestAutoMerge")


def answer(world: World, login: str, body: Any) -> dict[str, Any]:
    query, variables = str((body or {}).get("query", "")), (body or {}).get("variables") or {}
    mutation = next((name for name in _SERVED if name in query), None)
    if mutation is None:
        return _error("the stand-in serves enablePullRequestAutoMerge and disablePullRequestAutoMerge only")
    node = str(variables.get("pullRequestId", ""))
    for name in world.repos:
        for record in world.records(name)["pulls"].values():
            if f"PR_{record['id']}" != node:
                continue
            try:
                if mutation == "disablePullRequestAutoMerge":
                    record["auto_merge"] = None
                elif not allow_auto_merge(world, name):
                    raise ApiError(422, AUTO_MERGE_REFUSED)
                else:
                    world.enable_auto_merge(name, record, login, variables)
            except ApiError as error:
                return {"data": {mutation: None}, **_error(error.message, "UNPROCESSABLE")}
            world.settle(name, record)
            return {"data": {mutation: {"pullRequest": {"number": record["number"]}}}}
    return _error(f"Could not resolve to a node with the global id of '{node}'", "NOT_FOUND")


def _error(message: str, kind: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, **({"type": kind} if kind else {})}]}
