# syntax=docker/dockerfile:1
# One image for every role of imgrec: `web` (the default), `worker`, `autoscaler`,
# `init`, `status`, ... as its command. Three stages:
#   wheel    builds imgrec's wheel from this checkout
#   model    installs the export extra (torch) and exports the model, once
#   runtime  the serving-only install (no torch, no build tools), the model copied in,
#            a user of its own; what is shipped
# Build from the repository's root: docker build -t imgrec:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS model
# A CPU build of torch is enough to export (TORCH_INDEX_URL: an index that has one);
# none of it reaches the runtime stage.
ARG TORCH=torch==2.13.0
ARG TORCH_INDEX_URL=
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --disable-pip-version-check ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH" \
 && pip install --no-cache-dir --disable-pip-version-check "$(ls /wheels/imgrec-*.whl)[export]"
RUN IMGREC_MODEL_DIR=/model imgrec model build && chmod -R a+rX /model

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/imgrec --create-home imgrec
COPY --from=wheel /wheels /tmp/wheels
# Serving only, with the adapters a deployment may choose (S3, SQS, Auto Scaling, Redis).
RUN pip install "$(ls /tmp/wheels/imgrec-*.whl)[aws,redis]" && rm -rf /tmp/wheels
COPY --from=model /model /opt/imgrec/model
ENV IMGREC_MODEL_DIR=/opt/imgrec/model \
    IMGREC_DATA_DIR=/var/lib/imgrec \
    IMGREC_HOST=0.0.0.0 \
    IMGREC_PORT=8000
USER 10001:10001
WORKDIR /var/lib/imgrec
EXPOSE 8000
# For the web role: ready when the queue answers and the store takes a write. Other
# roles serve no HTTP: compose disables this for them, Kubernetes ignores it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('IMGREC_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["imgrec"]
CMD ["web"]
