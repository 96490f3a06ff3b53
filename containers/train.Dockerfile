# syntax=docker/dockerfile:1
# Training image of airloop: the GPU pods that the train DAG's KubernetesPodOperator starts.
#
#   docker build -f containers/train.Dockerfile -t airloop/train:0.1.0 .
#   docker run --rm --gpus all airloop/train:0.1.0 --help
#
# Python 3.11 (the project's interpreter) comes from uv's standalone builds (Ubuntu ships
# another). torch is the CUDA build: uv takes torch from PyPI, whose Linux x86_64 wheels of
# torch 2.13.0 are CUDA 13.0 builds that bring the CUDA runtime libraries as nvidia-* wheels
# (`uv pip compile` shows nvidia-cuda-runtime 13.0.x). The nvidia/cuda base matches that CUDA
# major: its NVIDIA_REQUIRE_CUDA makes the NVIDIA container runtime refuse a node whose driver
# is too old (CUDA 13 needs driver >= 580), and it sets NVIDIA_VISIBLE_DEVICES; the small `base`
# flavour is enough since torch carries its own libraries. For another CUDA build, pass e.g.
# --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 and a matching base.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM nvidia/cuda:13.0.0-base-ubuntu24.04

# TORCH_VERSION must equal the torch pin of requirements.txt (tests/containers checks).
ARG PYTHON_VERSION=3.11
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://pypi.org/simple

ENV DEBIAN_FRONTEND=noninteractive \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

COPY --from=uv /uv /usr/local/bin/uv

# libgomp1: OpenMP runtime of the xgboost wheel; ca-certificates: HTTPS to S3 and MLflow.
# uid 1000 is the image's `ubuntu` user: it becomes `airloop`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && (userdel --remove ubuntu 2>/dev/null || true) \
 && groupadd --gid 1000 airloop \
 && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash airloop \
 && uv python install "${PYTHON_VERSION}" \
 && uv venv --python "${PYTHON_VERSION}" /opt/venv

WORKDIR /opt/airloop
COPY requirements.txt requirements.lock ./
# Training needs neither Airflow, Ray, Great Expectations nor Evidently. The lock (resolved on
# a CPU machine) pins everything except the CUDA wheels, which the CUDA torch build pins itself.
RUN grep -vE '^(nvidia-|torch==|triton==)' requirements.lock > /tmp/constraints.txt \
 && grep -vE '^(apache-airflow|ray|great-expectations|evidently|torch|pytest|pytest-timeout|ruff|moto|mypy|hypothesis|schemathesis|detect-secrets|pip-audit|kubernetes-validate)([^A-Za-z0-9_.]|$)' requirements.txt > /tmp/train-requirements.txt \
 && uv pip install --no-cache \
      --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
      --index-strategy unsafe-best-match \
      -c /tmp/constraints.txt \
      "torch==${TORCH_VERSION}" \
      -r /tmp/train-requirements.txt \
 && rm /tmp/constraints.txt /tmp/train-requirements.txt \
 && python -c "import torch, xgboost; assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__; assert torch.version.cuda, 'torch was installed without CUDA'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'xgboost', xgboost.__version__)"

COPY config ./config
COPY tasks ./tasks
COPY feature_repo ./feature_repo

ENV PYTHONPATH=/opt/airloop \
    AIRLOOP_HOME=/opt/airloop \
    AIRLOOP_PROFILE=production \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER airloop
ENTRYPOINT ["python", "-m", "tasks.training"]
