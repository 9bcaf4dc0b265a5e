# The Stockade operator image: `python -m stockade`, non-root (uid 65532), read-only root
# filesystem friendly. Build: docker build -t stockade:dev .  (`make e2e-kind` does)
#
# The base is pinned to a patch release of the tag. For byte-reproducible builds pin its
# digest too: `docker buildx imagetools inspect python:3.11.14-slim-bookworm`, then
# build with --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a virtualenv with Stockade and its dependencies (pure-Python wheels) --------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/stockade
COPY pyproject.toml README.md ./
COPY operator/ operator/
# A regular (non-editable) install; bytecode is compiled here, because the final
# image's filesystem is read-only at run time.
# The `operator` extra (kopf, prometheus-client, orjson) and the `gateway` extra: the
# egress gateway (python -m stockade.gateway) runs from this image too.
RUN /opt/stockade/bin/pip install '.[operator,gateway]' \
    && /opt/stockade/bin/pip uninstall --yes pip \
    && /opt/stockade/bin/python -m compileall -q /opt/stockade/lib

# --- final: the interpreter, the virtualenv, nothing else ------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="stockade" \
      org.opencontainers.image.description="Kubernetes operator that runs AI agents as sandboxed pods" \
      org.opencontainers.image.licenses="Apache-2.0"
# No compilers or build tools: the slim base has none, and only the virtualenv is copied
# from the build stage. pip and setuptools of the base go too (nothing installs at run time).
RUN python -m pip uninstall --yes pip setuptools wheel \
    && rm -rf /root/.cache
COPY --from=build /opt/stockade /opt/stockade
ENV PATH=/opt/stockade/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532 is the conventional "nonroot" uid/gid (distroless); the chart's securityContext
# sets the same, so the image also runs where runAsNonRoot demands a numeric user.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "stockade"]
