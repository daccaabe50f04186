"""`promo setup --pool-type kubernetes`: the work pool's base job template, checked by its structure and by
rendering it as Prefect's worker does. No Kubernetes runs here (nor is prefect-kubernetes installed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from uuid import uuid4

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.templating import find_placeholders
from prefect.workers.base import BaseJobConfiguration

from promo.deployments.deploy import ensure_work_pool
from promo.deployments.kubernetes import CACHE_DIR, KUBERNETES, WORKER_IMAGE, kubernetes_base_job_template


class KubernetesJob(BaseJobConfiguration):
    """The fields prefect-kubernetes' job configuration adds to Prefect's base one (it is not installed here)."""

    namespace: str
    job_manifest: dict[str, Any]
    job_watch_timeout_seconds: int | None = None
    pod_watch_timeout_seconds: int
    stream_output: bool


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    (only,) = manifest["spec"]["template"]["spec"]["containers"]
    return only


def rendered(values: dict[str, Any], api_url: str = "http://prefect.promo.svc:4200/api") -> KubernetesJob:
    """The job a Kubernetes worker whose PREFECT_API_URL is ``api_url`` would submit for a run with ``values``."""
    job = asyncio.run(KubernetesJob.from_template_and_values(kubernetes_base_job_template(), values))
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        job.prepare_for_flow_run(FlowRun(id=uuid4(), flow_id=uuid4(), name="brave-otter"))
    return job


def test_every_placeholder_is_a_declared_variable_and_the_job_runs_the_worker_image():
    template = kubernetes_base_job_template()
    declared = template["variables"]["properties"]
    used = {placeholder.name for placeholder in find_placeholders(json.dumps(template["job_configuration"]))}
    assert used <= set(declared), sorted(used - set(declared))
    assert {"image", "namespace", "env", "command"} <= used

    manifest = template["job_configuration"]["job_manifest"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    assert manifest["metadata"]["namespace"] == "{{ namespace }}"
    assert manifest["spec"]["backoffLimit"] == 0 and manifest["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    job = container(manifest)
    assert (job["image"], job["args"], job["env"]) == ("{{ image }}", "{{ command }}", "{{ env }}")
    assert job["securityContext"]["capabilities"]["add"] == ["SYS_ADMIN"]  # buildah mounts inside the pod
    assert declared["image"]["default"] == WORKER_IMAGE
    # the image the Dockerfile's own build line tags
    dockerfile = (Path(__file__).resolve().parents[2] / "docker" / "worker.Dockerfile").read_text()
    assert f"-t {WORKER_IMAGE.split(':')[0]} ." in dockerfile


def test_a_rendered_job_carries_the_api_url_the_namespace_and_the_command():
    job = rendered({"namespace": "ci", "env": {"PROMO_REGISTRY_USERNAME": "bot"}})
    assert job.namespace == "ci" and job.job_manifest["metadata"]["namespace"] == "ci"
    assert job.env["PREFECT_API_URL"] == "http://prefect.promo.svc:4200/api"  # the worker's, passed to the pod
    assert job.env["PROMO_REGISTRY_USERNAME"] == "bot"
    assert job.env["PREFECT__FLOW_RUN_ID"]
    spec = container(job.job_manifest)
    assert spec["image"] == WORKER_IMAGE and spec["imagePullPolicy"] == "IfNotPresent"
    assert spec["volumeMounts"] == [{"name": "promo-cache", "mountPath": CACHE_DIR}]
    assert job.job_manifest["spec"]["ttlSecondsAfterFinished"] == 3600

    overridden = rendered({"image": "registry.example.com/promo-worker:1.4", "command": "prefect flow-run execute"})
    spec = container(overridden.job_manifest)
    assert spec["image"] == "registry.example.com/promo-worker:1.4"
    assert spec["args"] == "prefect flow-run execute"  # the worker splits it into the container's argv
    assert overridden.namespace == "promo"


def test_setup_creates_a_kubernetes_pool_with_that_template_once():
    try:
        created = ensure_work_pool("promo-k8s", KUBERNETES)
        assert created.line() == "created  work pool promo-k8s (kubernetes)"
        with get_client(sync_client=True) as client:
            pool = client.read_work_pool("promo-k8s")
        assert pool.type == KUBERNETES and pool.base_job_template == kubernetes_base_job_template()
        assert ensure_work_pool("promo-k8s", KUBERNETES).line() == "exists   work pool promo-k8s (kubernetes)"
    finally:
        with get_client(sync_client=True) as client:
            client.delete_work_pool("promo-k8s")
