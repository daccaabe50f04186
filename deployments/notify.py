"""Prefect automations that tell people a promo gate is waiting, or that a promo run failed.

A gate can wait a week, and without a message nobody learns of it but by looking. With ``notify: {block: NAME}`` in
promo.yaml, `promo setup` creates (or updates, by name) two automations per app that send through that Prefect
notification block (Slack, Microsoft Teams, a custom webhook...):

- ``promo-<app>-gate-waiting``: a run of one of promo's flows for the app suspends (under a deployment) or pauses (run
  locally), which is the moment its gate starts waiting: promo's flows pause nowhere else;
- ``promo-<app>-run-failed``: such a run fails or crashes: a rejection, a failed verification, a gate that timed out,
  any other error, with the state's one-line reason; and, when an approval was given but not applied because the
  target moved after the gate opened (the run's ``approval:not-applied`` tag, see flows/gate_plan.py), it says so.

"Promo's flows for the app" are runs of a flow promo deploys that carry the tag ``app:<app>``, which every run of the
deployments `promo setup` registers has from its start. Not the tags the gate adds (``promo-gate``, ``env:``,
``version:``): the server caches a run's tags for the events it emits (PREFECT_SERVER_EVENTS_RELATED_RESOURCE_CACHE_TTL,
5 minutes), so tags added during a run are missing from the Paused/Suspended event that follows. A run started in a
terminal (`promo promote-test` without a deployment) has the app tag only from its gate on, so its gate may go
unannounced; the terminal shows it.

The server renders subject and body when the event happens, so they read the tags the gate put on the run
(``env:<env>``, ``version:<v>``, see flows/gate.py) and link to the run. What only promo.yaml knows (where each
environment is promoted from, who may approve into it) is written into the templates by setup.

Without ``notify:`` setup deletes both automations, so removing the setting switches the messages off. An automation
switched off in the UI stays off when setup updates it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Literal
from uuid import UUID

from prefect.automations import AutomationCore, EventTrigger, Posture, SendNotification
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_UI_URL

from promo.config import PromoConfig
from promo.errors import InputError
from promo.release.gates import NOT_APPLIED_TAG

GATE_WAITING_EVENTS = frozenset({"prefect.flow-run.Paused", "prefect.flow-run.Suspended"})
# Crashed too: a worker that lost its run's process is a failure nobody sees either.
RUN_FAILED_EVENTS = frozenset({"prefect.flow-run.Failed", "prefect.flow-run.Crashed"})
NOTIFY_CAPABILITY = "notify"  # what Prefect's notification blocks declare, and SendNotification requires

AutomationStatus = Literal["created", "updated", "exists", "removed"]

# Jinja shared by every subject and body: the run's env and version from its tags read at send time, and the move.
_LABELS = """\
{%- macro label(name) -%}
{%- for tag in flow_run.tags if tag.startswith(name ~ ":") -%}{{ tag[name|length + 1:] }}{%- endfor -%}
{%- endmacro -%}
{%- set env = label("env") -%}
{%- set version = label("version") -%}
{%- set route = "rollback of " ~ env if flow.name == "rollback" else sources.get(env, "?") ~ " -> " ~ env -%}
"""

_GATE_SUBJECT = "promo: {{ app }} {{ version }} waits for approval into {{ env }}"
_GATE_BODY = """\
{{ app }} {{ version }} waits at its gate: {{ route }}.
Who may approve: {{ approvers.get(env, "anyone") }}
Flow run: {{ flow.name }}/{{ flow_run.name }}
Decide in the UI: {{ link }}
or: promo approve --env {{ env }} [--reject] --comment "..." (promo pending lists every waiting gate)
"""

_FAILED_SUBJECT = (
    "promo: {{ app }} {{ flow.name }} {{ flow_run.state.name|lower }}"
    "{% if version %} ({{ version }}, {{ route }}){% endif %}"
)
_FAILED_BODY = """\
{{ flow.name }}/{{ flow_run.name }} of {{ app }} ended {{ flow_run.state.name }}\
{%- if version %} ({{ version }}, {{ route }}){% endif %}.
Why: {{ (flow_run.state.message or "no message").replace("Flow run encountered an exception: ", "") }}
{% if not_applied in flow_run.tags -%}
The approval was not applied: {{ env }} moved after its gate opened, so nothing was written.
{% endif -%}
Flow run: {{ link }}
"""


def gate_waiting_name(app: str) -> str:
    return f"promo-{app}-gate-waiting"


def run_failed_name(app: str) -> str:
    return f"promo-{app}-run-failed"


def automation_names(app: str) -> tuple[str, str]:
    return gate_waiting_name(app), run_failed_name(app)


def ensure_notifications(config: PromoConfig, flow_names: Iterable[str]) -> list[tuple[str, AutomationStatus, str]]:
    """The automations promo.yaml's ``notify`` asks for, created or updated by name; without ``notify`` the ones an
    earlier setup made are deleted. Each as (name, status, detail), in the order of setup's other outcomes."""
    with get_client(sync_client=True) as client:
        if config.notify is None:
            return [
                (name, "removed", "promo.yaml has no notify")
                for name in automation_names(config.app)
                if _delete_named(client, name)
            ]
        block_id = notification_block_id(client, config.notify.block)
        wanted = notification_automations(config, block_id, flow_names, ui_url=PREFECT_UI_URL.value())
        return [(automation.name, *_apply(client, automation, config.notify.block)) for automation in wanted]


def notification_automations(
    config: PromoConfig, block_document_id: UUID, flow_names: Iterable[str], *, ui_url: str | None
) -> list[AutomationCore]:
    """The two automation definitions, without a server: ``ui_url`` is the UI the links fall back to when the
    server itself knows none (its PREFECT_UI_URL unset), as `promo pending` builds them."""
    context = _template_context(config, ui_url)
    app_tag = _related_tag(f"app:{config.app}")
    promo_flows = {"prefect.resource.role": "flow", "prefect.resource.name": sorted(flow_names)}
    tags = ["promo", f"app:{config.app}"]
    return [
        AutomationCore(
            name=gate_waiting_name(config.app),
            description=f"From promo setup: a message when a gate of {config.app} waits for a decision",
            tags=tags,
            trigger=_flow_run_trigger(GATE_WAITING_EVENTS, [app_tag, promo_flows]),
            actions=[_send(block_document_id, context, _GATE_SUBJECT, _GATE_BODY)],
        ),
        AutomationCore(
            name=run_failed_name(config.app),
            description=f"From promo setup: a message when a promo run of {config.app} fails",
            tags=tags,
            trigger=_flow_run_trigger(RUN_FAILED_EVENTS, [app_tag, promo_flows]),
            actions=[_send(block_document_id, context, _FAILED_SUBJECT, _FAILED_BODY)],
        ),
    ]


def notification_block_id(client: SyncPrefectClient, name: str) -> UUID:
    """The one notification block named ``name``, of whatever type (Slack, Teams, a webhook...)."""
    response = client.request(
        "POST",
        "/block_documents/filter",
        json={
            "block_documents": {"name": {"any_": [name]}, "is_anonymous": {"eq_": False}},
            "block_schemas": {"block_capabilities": {"all_": [NOTIFY_CAPABILITY]}},
            "include_secrets": False,
        },
    )
    response.raise_for_status()
    found = response.json()
    if not found:
        raise InputError(
            f"notify.block in promo.yaml names {name!r}, and the Prefect server has no notification block of that name",
            "create it in the UI (Blocks: Slack Webhook, Microsoft Teams Webhook, Custom Webhook...), run setup again",
        )
    if len(found) > 1:
        types = ", ".join(sorted((block.get("block_type") or {}).get("slug", "?") for block in found))
        raise InputError(
            f"several notification blocks are named {name!r} ({types})", "rename all but one, then run setup again"
        )
    return UUID(found[0]["id"])


def _template_context(config: PromoConfig, ui_url: str | None) -> str:
    """`{% set %}` lines holding what only promo.yaml knows, as JSON literals (which Jinja reads as its own)."""
    sources = {env.name: config.source_of(env.name).name for env in config.environments[1:]}
    approvers = {env.name: " or ".join(env.approvers) for env in config.environments if env.approvers}
    link = "flow_run|ui_url"
    if ui_url:
        link += f" or ({json.dumps(ui_url.rstrip('/') + '/runs/flow-run/')} ~ flow_run.id)"
    return (
        f"{{%- set app = {json.dumps(config.app)} -%}}\n"
        f"{{%- set sources = {json.dumps(sources)} -%}}\n"
        f"{{%- set approvers = {json.dumps(approvers)} -%}}\n"
        f"{{%- set link = {link} -%}}\n"
        f"{{%- set not_applied = {json.dumps(NOT_APPLIED_TAG)} -%}}\n"
    )


def _send(block_document_id: UUID, context: str, subject: str, body: str) -> SendNotification:
    return SendNotification(
        block_document_id=block_document_id, subject=context + _LABELS + subject, body=context + _LABELS + body
    )


def _flow_run_trigger(events: frozenset[str], related: list[dict]) -> EventTrigger:
    """Every matching state change of every flow run fires once, on its own (``for_each`` the run)."""
    return EventTrigger(
        expect=set(events),
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related=related,  # each must match one of the run's related resources
        for_each={"prefect.resource.id"},
        posture=Posture.Reactive,
        threshold=1,
    )


def _related_tag(tag: str) -> dict[str, str]:
    return {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"}


def _apply(client: SyncPrefectClient, automation: AutomationCore, block: str) -> tuple[AutomationStatus, str]:
    existing = client.read_automations_by_name(automation.name)
    if not existing:
        client.create_automation(automation)
        return "created", f"notifies {block}"
    kept, *duplicates = existing
    for duplicate in duplicates:  # two setups at once can both create it: one is enough, or each message comes twice
        client.delete_automation(duplicate.id)
    automation = automation.model_copy(update={"enabled": kept.enabled})  # switched off in the UI: stays off
    state = "" if kept.enabled else "switched off"
    if not duplicates and _definition(kept) == _definition(automation):
        return "exists", state
    client.update_automation(kept.id, automation)
    return "updated", ", ".join(filter(None, [f"notifies {block}", state]))


def _definition(automation: AutomationCore) -> dict:
    return automation.model_dump(include={"description", "tags", "trigger", "actions", "enabled"})


def _delete_named(client: SyncPrefectClient, name: str) -> bool:
    existing = client.read_automations_by_name(name)
    for automation in existing:
        client.delete_automation(automation.id)
    return bool(existing)
