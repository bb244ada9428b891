# The Chorus image: one image, several roles, chosen by the command.
#
#   docker run IMAGE worker        a worker (the default command)
#   docker run IMAGE api           the HTTP API (CHORUS_API_HOST=0.0.0.0, port 8000)
#   docker run IMAGE simulator     the model SIMULATOR (offline demo models)
#
# docker-compose.yml at the top of the repository runs all three next to
# PostgreSQL and Temporal. Configuration is the environment (see README,
# "Settings"); secrets are never baked into the image (.dockerignore keeps
# .env files out of the build context).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install the package and its dependencies into a virtualenv -----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/chorus
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when
# pyproject.toml changes, not on every code edit. (Without the sources the
# package itself is empty; the README is a stub until the real one is copied.)
COPY pyproject.toml ./
RUN touch README.md && /opt/chorus/bin/pip install .
# Then the package itself: a regular (not editable) install without the dev
# extras, so the runtime image carries no test tools and no loose sources.
COPY README.md ./
COPY core/ core/
COPY store/ store/
COPY workflows/ workflows/
COPY activities/ activities/
COPY runs/ runs/
COPY worker/ worker/
COPY api/ api/
COPY cli/ cli/
COPY simulator/ simulator/
RUN rm -rf build ./*.egg-info \
 && /opt/chorus/bin/pip install --no-deps --force-reinstall . \
 && /opt/chorus/bin/chorus --help > /dev/null

# ---- runtime ----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="chorus" \
      org.opencontainers.image.description="Durable orchestrator for multi-model LLM chains on Temporal"
ENV PATH=/opt/chorus/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHORUS_LOG_FORMAT=json \
    CHORUS_STATE_DIR=/var/lib/chorus \
    CHORUS_API_HOST=0.0.0.0 \
    CHORUS_API_PORT=8000

# An unprivileged user; the code and the shipped chains stay owned by root,
# so the process cannot rewrite what it runs.
RUN groupadd --system --gid 10001 chorus \
 && useradd --system --uid 10001 --gid chorus --home-dir /var/lib/chorus \
        --create-home --shell /usr/sbin/nologin chorus
COPY --from=build /opt/chorus /opt/chorus
WORKDIR /app
# Relative defaults resolve here: CHORUS_MODELS_FILE=chains/models.yaml,
# CHORUS_CHAINS_DIR=chains.
COPY chains/ chains/

USER chorus:chorus
EXPOSE 8000 8400
# The `chorus` console script declared in pyproject.toml ([project.scripts]).
ENTRYPOINT ["chorus"]
CMD ["worker"]
