# pru_app images. Stages: `build` installs dependencies and collects static files,
# `nginx` is the official nginx image with those static files and the config template,
# `minio` is MinIO built from its source release (`minio-build`), `app` (the default, last)
# runs Gunicorn as an unprivileged user.
# No `# syntax=` line: the builder's own Dockerfile frontend builds this file (COPY --chmod
# included), so a build never fetches a frontend image from Docker Hub (air-gapped hosts, mirrors).
# Base images by supported tag; to pin by digest, pass e.g.
#   --build-arg NGINX_IMAGE=nginx:1.30-alpine@sha256:<digest>   (docs/stack.md#image-versions)
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG NGINX_IMAGE=nginx:1.30-alpine
ARG GO_IMAGE=golang:1.27-bookworm
ARG MINIO_BASE_IMAGE=debian:bookworm-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-deps --require-hashes --requirement /tmp/requirements.txt
WORKDIR /app
COPY . /app
# collectstatic needs settings, not secrets: a throwaway key and no database.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-secret \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q /app/pru_app /app/core /app/chat /app/deploy

FROM ${NGINX_IMAGE} AS nginx
COPY deploy/nginx/default.conf.template /etc/nginx/templates/default.conf.template
# Run by the image's entrypoint after the templates (20-envsubst…): the trusted-proxy list.
COPY --chmod=755 deploy/nginx/trusted-proxies.sh /docker-entrypoint.d/25-pru-trusted-proxies.sh
COPY --from=build /app/staticfiles /srv/static
ENV NGINX_STATIC_ROOT=/srv/static
# Through nginx to the app's /healthz: unhealthy when nginx cannot reach it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD wget --quiet --output-document=/dev/null http://127.0.0.1/healthz || exit 1

FROM ${GO_IMAGE} AS minio-build
# MinIO's community edition is source-only since October 2025 (no images on Docker Hub, quay.io
# frozen, the repository archived in April 2026) and its README says to build it with `go install`.
# RELEASE.2025-10-15T17-29-55Z is its final release: it fixes GHSA-jjjj-jwhf-8rgr. mc (for the
# healthcheck and minio-setup) at its last release. See docs/storage-server.md.
ARG MINIO_RELEASE=RELEASE.2025-10-15T17-29-55Z
ARG MC_RELEASE=RELEASE.2025-08-13T08-35-41Z
ENV CGO_ENABLED=0 GOBIN=/out GOFLAGS=-trimpath
# The version flags MinIO's own build sets, so `minio --version` names the release it is.
RUN version=$(echo "${MINIO_RELEASE#RELEASE.}" | sed -E 's/T([0-9]{2})-([0-9]{2})-([0-9]{2})Z$/T\1:\2:\3Z/') \
    && go install -ldflags "-s -w -X github.com/minio/minio/cmd.ReleaseTag=${MINIO_RELEASE} -X github.com/minio/minio/cmd.Version=${version}" \
        "github.com/minio/minio@${MINIO_RELEASE}" \
    && go install -ldflags "-s -w" "github.com/minio/mc@${MC_RELEASE}" \
    && /out/minio --version

FROM ${MINIO_BASE_IMAGE} AS minio
# bash for minio-setup; the server runs as an unprivileged user that owns only /data.
RUN groupadd --system --gid 10002 minio \
    && useradd --system --uid 10002 --gid minio --home-dir /tmp --no-create-home --shell /usr/sbin/nologin minio \
    && mkdir /data && chown minio:minio /data
COPY --from=minio-build /out/minio /out/mc /usr/local/bin/
# mc's alias "local" for the healthcheck, and a config directory the user can write.
ENV MC_HOST_local=http://127.0.0.1:9000 \
    MC_CONFIG_DIR=/tmp/.mc
USER minio:minio
EXPOSE 9000 9001
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=10 CMD ["mc", "ready", "local"]
ENTRYPOINT ["minio"]
CMD ["server", "/data", "--address", ":9000", "--console-address", ":9001"]

FROM ${PYTHON_IMAGE} AS app
# Bytecode was compiled at build time; the app user cannot (and need not) write beside the code.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    GUNICORN_BIND=0.0.0.0:8000 \
    GUNICORN_WORKER_TMP_DIR=/dev/shm
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
# Code and collected static files belong to root: the app user can read, not rewrite, them.
COPY --from=build /app /app
WORKDIR /app
USER app:app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "deploy/healthcheck.py", "http://127.0.0.1:8000/healthz"]
CMD ["deploy/compose/web/start"]
