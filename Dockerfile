# syntax=docker/dockerfile:1
# pru_app images. Stages: `build` installs dependencies and collects static files,
# `nginx` is the official nginx image with those static files and the config template,
# `app` (the default, last) runs Gunicorn as an unprivileged user.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG NGINX_IMAGE=nginx:1.28-alpine

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt
WORKDIR /app
COPY . /app
# collectstatic needs settings, not secrets: a throwaway key and no database.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-secret \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q /app/pru_app /app/chat /app/deploy

FROM ${NGINX_IMAGE} AS nginx
COPY deploy/nginx/default.conf.template /etc/nginx/templates/default.conf.template
# Run by the image's entrypoint after the templates (20-envsubst…): the trusted-proxy list.
COPY --chmod=755 deploy/nginx/trusted-proxies.sh /docker-entrypoint.d/25-pru-trusted-proxies.sh
COPY --from=build /app/staticfiles /srv/static
ENV NGINX_STATIC_ROOT=/srv/static
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD wget --quiet --output-document=/dev/null http://127.0.0.1/nginx-healthz || exit 1

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
