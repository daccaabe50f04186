"""The base job template of a Kubernetes work pool for promo: each flow run is a Job whose one container runs the
worker image built from docker/worker.Dockerfile (promo installed, git, buildah).

The shape is prefect-kubernetes' default template (``KubernetesWorker.get_default_base_job_template()``): a
``job_configuration`` whose ``job_manifest`` is a batch/v1 Job with ``{{ placeholders }}``, and a ``variables`` JSON
schema that declares each placeholder with its default. prefect-kubernetes need not be installed where `promo setup`
runs (it is not here), so the template is written out rather than asked of the worker class; only the Kubernetes
worker, in the cluster, reads it. What promo changes: the image defaults to the promo worker image, the namespace to
``promo``, and the container may run buildah (the capability and profiles docker/compose.yaml gives the worker).

The worker fills ``env`` with its own Prefect settings (``PREFECT_API_URL`` among them) and ``command`` with
``prefect flow-run execute``; a run reads its app's config from the server, so the pod needs no promo.yaml.
"""

from __future__ import annotations

from typing import Any

KUBERNETES = "kubernetes"
# `docker build -f docker/worker.Dockerfile -t promo-worker .`, then pushed where the cluster pulls from
WORKER_IMAGE = "promo-worker:latest"
NAMESPACE = "promo"
FINISHED_JOB_TTL = 3600  # seconds a finished Job (and its pod's log) stays for a look before Kubernetes removes it
CACHE_DIR = "/var/cache/promo"  # the image's PROMO_CACHE_DIR: an emptyDir here, a fresh pod starts with empty caches

# buildah in a pod: vfs storage and chroot isolation (set in the image) still need to mount and unshare.
BUILDAH_SECURITY_CONTEXT = {
    "capabilities": {"add": ["SYS_ADMIN"]},
    "seccompProfile": {"type": "Unconfined"},
    "appArmorProfile": {"type": "Unconfined"},
}


def _nullable(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"anyOf": [{"type": kind}, {"type": "null"}], "default": None, "description": description, **extra}


def kubernetes_base_job_template(image: str = WORKER_IMAGE, namespace: str = NAMESPACE) -> dict[str, Any]:
    """``base_job_template`` of a work pool of type kubernetes whose runs start the promo worker image."""
    container = {
        "name": "prefect-job",
        "image": "{{ image }}",
        "imagePullPolicy": "{{ image_pull_policy }}",
        "args": "{{ command }}",  # the image has no entrypoint: this is the command
        "env": "{{ env }}",
        "securityContext": BUILDAH_SECURITY_CONTEXT,
        "volumeMounts": [{"name": "promo-cache", "mountPath": CACHE_DIR}],
    }
    job_manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"labels": "{{ labels }}", "namespace": "{{ namespace }}", "generateName": "{{ name }}-"},
        "spec": {
            "backoffLimit": 0,  # a failed run is retried by Prefect's rules, never by Kubernetes starting it again
            "ttlSecondsAfterFinished": "{{ finished_job_ttl }}",
            "template": {
                "spec": {
                    "parallelism": 1,
                    "completions": 1,
                    "restartPolicy": "Never",
                    "serviceAccountName": "{{ service_account_name }}",
                    "containers": [container],
                    "volumes": [{"name": "promo-cache", "emptyDir": {}}],
                }
            },
        },
    }
    variables = {
        "type": "object",
        "properties": {
            "name": _nullable("string", "Name given to the Job; default: the flow run's name."),
            "env": {
                "type": "object",
                "title": "Environment Variables",
                "description": "Added to the Prefect settings the worker passes (PREFECT_API_URL, ...): e.g. "
                "PROMO_REGISTRY_USERNAME, or GIT_SSH_COMMAND for the GitOps push.",
                "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "labels": {
                "type": "object",
                "description": "Labels of the Job.",
                "additionalProperties": {"type": "string"},
            },
            "command": _nullable("string", "Leave empty: the worker sets `prefect flow-run execute`."),
            "namespace": {"type": "string", "default": namespace, "description": "Namespace the Jobs run in."},
            "image": {
                "type": "string",
                "default": image,
                "description": "The promo worker image (docker/worker.Dockerfile), as the cluster pulls it.",
            },
            "image_pull_policy": {
                "type": "string",
                "enum": ["IfNotPresent", "Always", "Never"],
                "default": "IfNotPresent",
                "description": "When the node pulls the image.",
            },
            "service_account_name": _nullable("string", "Service account of the Job's pod; default: the namespace's."),
            "finished_job_ttl": _nullable(
                "integer", "Seconds a finished Job is kept before Kubernetes removes it.", default=FINISHED_JOB_TTL
            ),
            "job_watch_timeout_seconds": _nullable("integer", "How long the worker waits for a Job event; none: ever."),
            "pod_watch_timeout_seconds": {
                "type": "integer",
                "default": 60,
                "description": "How long the worker waits for the pod to start.",
            },
            "stream_output": {
                "type": "boolean",
                "default": True,
                "description": "Stream the pod's output to the worker's log.",
            },
        },
    }
    job_configuration = {
        "command": "{{ command }}",
        "env": "{{ env }}",
        "labels": "{{ labels }}",
        "name": "{{ name }}",
        "namespace": "{{ namespace }}",
        "job_manifest": job_manifest,
        "job_watch_timeout_seconds": "{{ job_watch_timeout_seconds }}",
        "pod_watch_timeout_seconds": "{{ pod_watch_timeout_seconds }}",
        "stream_output": "{{ stream_output }}",
    }
    return {"job_configuration": job_configuration, "variables": variables}
