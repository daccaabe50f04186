# The promo worker: a Prefect process worker with promo installed, git, and buildah for image builds without a
# Docker daemon. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t promo-worker .
# It polls the work pool `promo` of the server in PREFECT_API_URL; `promo setup` creates the pool and deployments.
FROM python:3.11-slim

# git for the app and GitOps remotes, buildah to build and push images, ca-certificates for HTTPS registries.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git buildah ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# buildah inside a container: the vfs storage driver (no overlay mounts) and chroot isolation (no nested runtime).
# promo passes the same flags on each call; this makes a `buildah` run by hand in the container behave alike.
RUN mkdir -p /etc/containers \
    && printf '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n' \
       > /etc/containers/storage.conf
ENV BUILDAH_ISOLATION=chroot \
    STORAGE_DRIVER=vfs \
    PROMO_CACHE_DIR=/var/cache/promo \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PYTHONUNBUFFERED=1
# An approved gate's run waits in the work pool until the worker next asks for work: 1 s, not Prefect's default 10 s.
ENV PREFECT_WORKER_QUERY_SECONDS=1

# The project, installed (not editable): deployments run flows by module path (promo.flows.promote.promote_test).
WORKDIR /opt/promo
COPY pyproject.toml README.md ./
COPY promo ./promo
COPY flows ./flows
COPY tasks ./tasks
COPY deployments ./deployments
RUN pip install --no-cache-dir . \
    && git config --system user.name "promo" \
    && git config --system user.email "promo@localhost"

VOLUME ["/var/cache/promo", "/var/lib/containers"]
WORKDIR /var/lib/promo
CMD ["prefect", "worker", "start", "--pool", "promo", "--type", "process"]
