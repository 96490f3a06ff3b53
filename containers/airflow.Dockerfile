# syntax=docker/dockerfile:1
# Airflow 3 image of airloop (production profile): api-server, scheduler, dag-processor,
# triggerer and the LocalExecutor's task processes all run from it.
#
# It installs every runtime dependency of requirements.txt (pins from requirements.lock): DAG
# tasks call the same tasks/ code as the local profile (Great Expectations, Feast, MLflow,
# XGBoost, Evidently, the Ray Serve REST client), and evaluate+gate loads both candidate
# flavours, so torch is here too, as the CPU wheel. Only training needs a GPU: it runs in
# containers/train.Dockerfile pods. Test and dev tools (pytest, ruff, moto) are left out.
#
#   docker build -f containers/airflow.Dockerfile -t airloop/airflow:0.1.0 .
FROM apache/airflow:3.3.2-python3.11

# Must equal the pins of apache-airflow and torch in requirements.txt (tests/containers checks).
ARG AIRFLOW_VERSION=3.3.2
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

USER root
# libgomp1: OpenMP runtime of the xgboost wheel. /opt/airflow/auth: the SimpleAuthManager
# passwords file (a named volume in docker-compose.yaml inherits this ownership).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /opt/airloop /opt/airflow/auth \
 && chown -R airflow:0 /opt/airloop /opt/airflow/auth

USER airflow
WORKDIR /opt/airloop
COPY --chown=airflow:0 requirements.txt requirements.lock ./
# One resolve: apache-airflow pinned to the base image's version (Airflow's documented way of
# extending its image), torch's CPU build, the rest of requirements.txt under the lock.
RUN grep -vE '^(torch|pytest|pytest-timeout|ruff|moto|mypy|hypothesis|schemathesis|detect-secrets|pip-audit|kubernetes-validate)([^A-Za-z0-9_.]|$)' requirements.txt > /tmp/runtime-requirements.txt \
 && pip install --no-cache-dir \
      --extra-index-url "${TORCH_INDEX_URL}" \
      -c requirements.lock \
      "apache-airflow==${AIRFLOW_VERSION}" \
      "torch==${TORCH_VERSION}+cpu" \
      -r /tmp/runtime-requirements.txt \
 && rm /tmp/runtime-requirements.txt \
 && python -c "import airflow, torch; assert airflow.__version__ == '${AIRFLOW_VERSION}', airflow.__version__; assert torch.__version__ == '${TORCH_VERSION}+cpu', torch.__version__"

COPY --chown=airflow:0 config ./config
COPY --chown=airflow:0 tasks ./tasks
COPY --chown=airflow:0 plugins ./plugins
COPY --chown=airflow:0 dags ./dags
COPY --chown=airflow:0 feature_repo ./feature_repo

# The project is importable (config, tasks, plugins) and Airflow reads DAGs/plugins from it;
# docker-compose.yaml bind-mounts the same folders over these copies for development.
ENV PYTHONPATH=/opt/airloop \
    AIRLOOP_HOME=/opt/airloop \
    AIRLOOP_PROFILE=production \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/airloop/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airloop/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GX_ANALYTICS_ENABLED=False \
    MLFLOW_DISABLE_TELEMETRY=true

WORKDIR /opt/airflow
USER airflow
