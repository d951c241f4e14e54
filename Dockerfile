# One image for every role of imgrec: `web` (the default), `worker`, `autoscaler`,
# `init`, `status`, ... as its command. Four stages:
#   base     the Python image, trusting the build's own CA certificates (CA_CERTS) if any
#   wheel    builds imgrec's wheel from this checkout
#   model    installs the export extra (onnx, the weight packages, scikit-image: no torch)
#            and builds the model, once
#   runtime  the serving-only install (no onnx, no build tools), the model copied in, a
#            user of its own; what is shipped
# Build from the repository's root: docker build -t imgrec:0.1.0 .
# Build arguments (docs/deploying/image.md):
#   PYTHON_IMAGE   the base image: Debian-like, Python 3.11 or later as `python` and `pip`
#                  on its PATH, with ca-certificates and useradd
#   PIP_INDEX_URL  the package index pip installs from (a mirror or a proxy of PyPI)
#   CA_CERTS       PEM certificates to trust besides the base's, for pip and the system
#                  (an intercepting proxy, a private index): --build-arg CA_CERTS="$(cat ca.pem)"
# No `# syntax=` line: the builder's own Dockerfile frontend is used, so a build needs no
# registry but the one that serves PYTHON_IMAGE (or none, for a local base image).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG PIP_INDEX_URL=https://pypi.org/simple

FROM ${PYTHON_IMAGE} AS base
ARG CA_CERTS=
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Added to the system's store (kept in the image: a store or queue behind the same CA is
# trusted at run time too) and made pip's bundle (pip otherwise trusts only its own).
RUN if [ -n "$CA_CERTS" ]; then \
      printf '%s\n' "$CA_CERTS" > /usr/local/share/ca-certificates/imgrec-build.crt \
      && update-ca-certificates \
      && printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > /etc/pip.conf; \
    fi

FROM base AS wheel
ARG PIP_INDEX_URL
WORKDIR /src
COPY pyproject.toml README.md ./
# The dependencies of the two installs below, as requirements files: each is installed in
# a layer of its own, which only a change to that list rebuilds (a change to src/ costs a
# new wheel and model, not a download of every package again).
RUN mkdir /requirements && for install in "export" "aws redis"; do \
      python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + [d for e in sys.argv[1:] for d in p['optional-dependencies'][e]]))" \
        $install > "/requirements/$(echo $install | tr ' ' '-').txt"; \
    done
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM base AS model
ARG PIP_INDEX_URL
COPY --from=wheel /requirements/export.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
COPY --from=wheel /wheels /wheels
RUN pip install "$(ls /wheels/imgrec-*.whl)[export]"
RUN IMGREC_MODEL_DIR=/model imgrec model build && chmod -R a+rX /model

FROM base AS runtime
ARG PIP_INDEX_URL
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/imgrec --create-home imgrec
# Serving only, with the adapters a deployment may choose (S3, SQS, Auto Scaling, Redis):
# their dependencies first, then the wheel.
COPY --from=wheel /requirements/aws-redis.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY --from=wheel /wheels /tmp/wheels
RUN pip install "$(ls /tmp/wheels/imgrec-*.whl)[aws,redis]" && rm -rf /tmp/wheels
COPY --from=model /model /opt/imgrec/model
# A worker here never stops by itself (IMGREC_WORKER_IDLE_TIMEOUT=inf): whatever runs the
# container (KEDA, an HPA, compose, docker) decides, and would only start it again. An
# autoscaler's own workers get its idle timeout instead. The worker touches IMGREC_LIVE_FILE
# each time its loop goes round: what its health check looks at.
ENV IMGREC_MODEL_DIR=/opt/imgrec/model \
    IMGREC_DATA_DIR=/var/lib/imgrec \
    IMGREC_HOST=0.0.0.0 \
    IMGREC_PORT=8000 \
    IMGREC_WORKER_IDLE_TIMEOUT=inf \
    IMGREC_LIVE_FILE=/tmp/imgrec-alive
USER 10001:10001
WORKDIR /var/lib/imgrec
EXPOSE 8000
# One check that fits the container's role (its command): web, GET /readyz on IMGREC_PORT;
# worker, its loop went round lately (IMGREC_LIVE_FILE's age); autoscaler, its heartbeat
# in the store is fresh; any other command (init, status, ...), nothing to check.
HEALTHCHECK --interval=10s --timeout=10s --start-period=30s --retries=3 CMD ["imgrec", "health"]
ENTRYPOINT ["imgrec"]
CMD ["web"]
