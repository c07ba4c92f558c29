# Items API image. Stages: `builder` installs the pinned dependencies into a
# virtualenv; `dev` (docker/docker-compose.local.yml) runs Flask's reloading
# debug server on bind-mounted source; `runtime` (the default, last stage) is the
# production image: the venv, the code, the server (granian), a non-root user.
#
#   docker build -t project-01-container-api --build-arg GIT_SHA="$(git rev-parse HEAD)" .
#
# No BuildKit-only syntax, so the classic builder and BuildKit both build it.

FROM python:3.11.14-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# Fixed IDs, so volume and file ownership is predictable across rebuilds and hosts.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app
WORKDIR /app

FROM base AS builder
# binutils only in this throwaway stage (see the strip below); its version is
# whatever the base image's Debian release carries.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
# The venv gets no pip of its own: the base image's pip installs into it, which
# keeps pip and setuptools out of the runtime image.
RUN python -m venv --without-pip "$VIRTUAL_ENV"
COPY requirements.txt ./
# Some wheels (SQLAlchemy's Cython modules) ship debug symbols, about 8 MB the
# runtime never reads; only files that carry them are touched.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN pip --python "$VIRTUAL_ENV/bin/python" install --no-cache-dir --requirement requirements.txt \
 && find "$VIRTUAL_ENV" -name '*.so' -print0 \
    | while IFS= read -r -d '' so; do \
        if readelf -S "$so" >/tmp/sections && grep -q debug_info /tmp/sections; then strip --strip-debug "$so"; fi; \
      done

FROM base AS dev
COPY --from=builder /opt/venv /opt/venv
# The source is bind-mounted at /app by the local compose file.
USER 10001:10001
ENV APP_ENV=local
EXPOSE 8000
CMD ["flask", "--app", "app.main:create_app", "run", "--debug", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS runtime
COPY --from=builder /opt/venv /opt/venv
# Owned by root and read-only to the app user: the process cannot rewrite its code.
COPY alembic.ini ./
COPY migrations/ migrations/
COPY app/ app/
USER 10001:10001
ENV APP_ENV=production \
    PORT=8000
EXPOSE 8000
# Liveness only (no database): urllib, because the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]
# Labels last: a new GIT_SHA must not invalidate the layers above.
ARG GIT_SHA=unknown
ARG VERSION=0.1.0
# The app reports its revision (the items_api_build_info metric).
ENV GIT_SHA=$GIT_SHA
ARG SOURCE_URL=https://gitlab.com/namespace/project-01-container-api
LABEL org.opencontainers.image.title="project-01-container-api" \
      org.opencontainers.image.description="Items API: Flask + PostgreSQL, served by granian" \
      org.opencontainers.image.source=$SOURCE_URL \
      org.opencontainers.image.revision=$GIT_SHA \
      org.opencontainers.image.version=$VERSION
# Exec form: the server (app/server.py) is PID 1, gets SIGTERM, drains for
# SHUTDOWN_DRAIN_SECONDS and lets in-flight requests finish within GRACEFUL_TIMEOUT.
CMD ["python", "-m", "app.server"]
