# syntax=docker/dockerfile:1
# vaultd: build a virtualenv in one stage, copy only it into a slim runtime stage.
#
#   docker build -t vaultd .                                  # internal root key only
#   docker build -t vaultd:aws --build-arg EXTRAS=aws .       # + AWS KMS (also: gcp, azure,
#   docker build -t vaultd:all --build-arg EXTRAS=all .       #   hashicorp, all; comma-separated)
#   docker run -p 50051:50051 -v vaultd-data:/var/lib/vaultd vaultd
#
# The home directory is not the data volume, so nothing but vaultd's data lands in the volume.
# A host directory mounted at /var/lib/vaultd must be writable by uid 10001; when it is not,
# vaultd exits with one line naming the directory and the chown that fixes it.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/vaultd
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vaultd ./vaultd
COPY providers ./providers
# ".[aws,gcp]" when EXTRAS is set, "." otherwise.
RUN /opt/vaultd/bin/pip install ".${EXTRAS:+[$EXTRAS]}"

FROM python:${PYTHON_VERSION}-slim AS runtime
# A fixed, unprivileged uid/gid, so volume ownership and runAsNonRoot policies can name it.
RUN groupadd --system --gid 10001 vaultd \
 && useradd --system --uid 10001 --gid vaultd --no-log-init \
      --home-dir /home/vaultd --create-home --shell /usr/sbin/nologin vaultd \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/vaultd
COPY --from=build /opt/vaultd /opt/vaultd
ENV PATH=/opt/vaultd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VAULTD_LISTEN=0.0.0.0:50051 \
    VAULTD_DATA_DIR=/var/lib/vaultd
WORKDIR /var/lib/vaultd
VOLUME ["/var/lib/vaultd"]
USER 10001:10001
# gRPC; metrics when started with --metrics-listen 0.0.0.0:9090 (VAULTD_METRICS_LISTEN).
EXPOSE 50051 9090
# Asks the gRPC health service (grpc.health.v1). With TLS, set VAULTD_HEALTH_TLS_CA (and
# VAULTD_HEALTH_TLS_CERT / _KEY for mutual TLS, VAULTD_HEALTH_TLS_SERVER_NAME for the name).
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["vaultd", "health"]
ENTRYPOINT ["vaultd"]
CMD ["serve"]
