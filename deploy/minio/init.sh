#!/bin/sh
# One-shot (docker-compose.yaml: minio-init): the `airloop` bucket, one policy per component and
# one user per component. Safe to run again: users get the password in the environment, policies
# are replaced by the files beside this script.
#
#   user (variable)                      policy            can
#   S3_ACCESS_KEY / S3_SECRET_KEY        airloop-pipeline  read and write the bucket except mlflow/
#                                                          (Airflow's tasks, the training pod)
#   MLFLOW_S3_ACCESS_KEY / ..._SECRET_KEY airloop-mlflow   read and write mlflow/ only (the server's
#                                                          proxied artifacts)
#   S3_SERVING_ACCESS_KEY / ..._SECRET_KEY airloop-serving write new objects under inference/ and
#                                                          nothing else: no read, no list, no delete
set -eu
here=$(dirname "$0")
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing local/airloop

airloop_user() {  # policy access-key secret-key
  mc admin policy create local "$1" "$here/${1#airloop-}-policy.json" >/dev/null
  mc admin user add local "$2" "$3" >/dev/null
  # attach fails when the policy is already attached: detach first (re-runs are no-ops)
  mc admin policy detach local "$1" --user "$2" >/dev/null 2>&1 || true
  mc admin policy attach local "$1" --user "$2" >/dev/null
  echo "minio-init: user $2 has policy $1"
}

airloop_user airloop-pipeline "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
airloop_user airloop-mlflow "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY"
airloop_user airloop-serving "$S3_SERVING_ACCESS_KEY" "$S3_SERVING_SECRET_KEY"
