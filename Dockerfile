# spectune image: `spectune` with a CUDA build of PyTorch, for `docker compose` on a GPU host
# and for Kubernetes Jobs. Every service runs it with a different command (see
# docker-compose.yml): `docker run IMAGE worker --study-name s1` runs `spectune worker ...`.
#
# Checked by tests/deploy/test_dockerfile.py (hadolint when installed, and a checklist).
#
# Build args:
#   TORCH_VERSION    torch from PyPI's default index: on Linux x86_64 that wheel is the CUDA
#                    build (its CUDA libraries come as pip packages; the host needs only the
#                    NVIDIA driver and the NVIDIA Container Toolkit). Default: the version the
#                    tests run on, so an exported config re-runs with the same torch.
#   SPECTUNE_EXTRAS  optional extras of pyproject.toml, comma-separated (e.g. encoders); none by
#                    default, and never dev.
#   SPECTUNE_UID/GID the uid and gid of the non-root user: make them the owner of the host's runs
#                    folder (`id -u`, `id -g`), which is bind-mounted on /runs.

FROM python:3.11.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, in its own layer: several GB that change only with TORCH_VERSION.
ARG TORCH_VERSION=2.13.0
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY study/ study/
COPY models/ models/
COPY datasets/ datasets/
COPY storage/ storage/
COPY dashboards/ dashboards/

# A regular (not editable) install of the project and its runtime dependencies; the dev extra
# (pytest, ruff, mypy) stays out of the image. The freeze file records what was installed.
ARG SPECTUNE_EXTRAS=""
RUN pip install --no-cache-dir "/src${SPECTUNE_EXTRAS:+[${SPECTUNE_EXTRAS}]}" \
    && pip freeze > /opt/venv/spectune-freeze.txt


FROM python:3.11.11-slim-bookworm AS runtime

ARG SPECTUNE_UID=1000
ARG SPECTUNE_GID=1000
# /runs (studies' checkpoints, graph cache, exports, reports) and /gpu-slots (GPU claims shared
# by the workers of one host) are owned by the user: a new named volume mounted on /gpu-slots
# takes this ownership from the image.
RUN groupadd --gid "${SPECTUNE_GID}" spectune \
    && useradd --uid "${SPECTUNE_UID}" --gid spectune --create-home --shell /usr/sbin/nologin spectune \
    && install -d -o spectune -g spectune /runs /data /gpu-slots

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPECTUNE_DATA_ROOT=/data \
    SPECTUNE_CACHE_DIR=/runs/cache \
    SPECTUNE_ARTIFACT_DIR=/runs/artifacts \
    SPECTUNE_GPU_SLOT_DIR=/gpu-slots

WORKDIR /runs
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER ${SPECTUNE_UID}:${SPECTUNE_GID}

# No secrets here: the storage URL (with its password) comes from the environment at run time.
# An init process is given by the runtime: `init: true` in docker-compose.yml (Docker's tini),
# `docker run --init`; in Kubernetes the worker, PID 1 of its container, handles SIGTERM itself.
ENTRYPOINT ["spectune"]
CMD ["--help"]
