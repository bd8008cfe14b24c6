# The app image: gunicorn + UvicornWorker serving app/, as a non-root user on a read-only root.
# Build:  docker build -t fastapi-service .
#
# The base is named once, literally, so Dependabot can bump it (it cannot follow FROM ${ARG}).
# To build on another base (your registry's mirror, another Python line), pass a build context
# named after the image on that FROM line; BuildKit builds on the context's image instead:
#   docker build --build-context IMAGE:TAG=docker-image://mirror.example/python:3.13-slim .
# A name that matches no FROM line is ignored without a word: keep it in step with the line.
# uv.lock has wheels of every runtime dependency for CPython 3.11 to 3.15 (amd64 and arm64),
# so no base needs a compiler.
FROM python:3.14-slim AS base

# ---- build: locked dependencies into /opt/venv, then the code, all precompiled -----------------
FROM base AS build
SHELL ["/bin/sh", "-eu", "-c"]
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# uv from PyPI (no registry pulls here); it stays in this stage.
RUN python3 -m venv /opt/uv \
 && /opt/uv/bin/pip install --no-cache-dir uv==0.13.9
WORKDIR /srv
# Dependencies first: this layer is reused until pyproject.toml or uv.lock change.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    /opt/uv/bin/uv sync --locked --no-dev --no-install-project --python "$(command -v python3)"
COPY gunicorn.conf.py prestart.s[h] ./
COPY app ./app
# Bytecode now, so a read-only root filesystem costs nothing at start.
RUN /opt/venv/bin/python -m compileall -q /srv

# ---- runtime: the base, the venv, the code; no compiler, no uv, no caches -----------------------
FROM base AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/your-org/fastapi-service
LABEL org.opencontainers.image.title="fastapi-service" \
      org.opencontainers.image.description="FastAPI served by gunicorn + UvicornWorker" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    CONTROL_SOCKET=/tmp/gunicorn.ctl \
    APP_VERSION=${VERSION}
COPY --from=build /opt/venv /opt/venv
COPY --from=build /srv /srv
WORKDIR /srv
# Numeric, so Kubernetes can verify runAsNonRoot; no passwd entry needed, and any other UID
# (OpenShift's arbitrary ones) works too: nothing here is written to outside /tmp and /dev/shm.
USER 10001:10001
EXPOSE 8000
# gunicorn drains on SIGTERM; SIGQUIT would make UvicornWorkers stop at once.
STOPSIGNAL SIGTERM
# Every 0.5 s while starting (healthy within a second of the start), every 10 s after.
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --start-interval=0.5s --retries=3 \
    CMD ["python", "-m", "app.server.healthcheck"]
ENTRYPOINT ["python", "-m", "app.server"]
CMD []
