#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine, idempotently:
#   1. Java (Spark's JVM), Maven and GnuPG, from Debian's packages when missing;
#   2. the virtualenv with the pinned requirements and this project (editable);
#   3. the Delta jars, resolved once into .jars/ so that later runs start offline;
#   4. the Airflow metadata database (SQLite) under .airflow/;
#   5. the test servers: OpenSSH's sshd (Debian), Azurite (npm, into .cache/npm), PostgreSQL (Debian), Chromium.
# Each step leaves a stamp in .stamps/ and is skipped while its inputs are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .stamps

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing: $* (install them, e.g. with apt-get)" >&2; exit 1
  fi
}
command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v mvn >/dev/null || apt_install maven
# GnuPG for the PGP encryption of exported files (python-gnupg drives its gpg).
command -v gpg >/dev/null || apt_install gnupg

PY=${PYTHON:-python3.11}
if [ ! -f .stamps/venv ] || [ requirements.txt -nt .stamps/venv ] || [ pyproject.toml -nt .stamps/venv ]; then
  echo "==> virtualenv (.venv) with requirements.txt"
  # A venv left half-made by an interrupted setup (no pip) is made again.
  if [ ! -x .venv/bin/python ] || [ ! -x .venv/bin/pip ]; then rm -rf .venv && "$PY" -m venv .venv; fi
  .venv/bin/pip install -q --upgrade pip
  # pyspark and pyspark-client ship the same files: both pinned to one version (see requirements.in).
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q --no-deps -e .
  touch .stamps/venv
fi

JARS=(io.delta:delta-spark_4.1_2.13:4.4.0 io.delta:delta-storage:4.4.0)
if [ ! -f .stamps/jars ] || [ scripts/setup.sh -nt .stamps/jars ]; then
  echo "==> Delta jars into .jars/"
  rm -rf .jars && mkdir -p .jars
  # Only Delta's own jars: Spark already ships Hadoop, Parquet and Jackson, and a second copy of
  # those from Delta's transitive dependencies would clash with Spark's.
  for artifact in "${JARS[@]}"; do
    mvn -q -B dependency:copy -Dartifact="$artifact" -DoutputDirectory=.jars
  done
  touch .stamps/jars
fi
# The S3A connector for a lake on S3 (CDP_LAKE=s3a://...): hadoop-aws of the Hadoop version pyspark ships
# (hadoop-client-api-3.4.2.jar) and the AWS SDK v2 bundle it was built against (hadoop-project 3.4.2:
# aws-java-sdk-v2.version 2.29.52), into .jars/s3a/ (a sub-folder: only s3a:// lakes load them; the Delta
# step above empties .jars/, so this one then copies them again from Maven's local repository).
S3A_JARS=(org.apache.hadoop:hadoop-aws:3.4.2 software.amazon.awssdk:bundle:2.29.52)
if [ ! -f .stamps/s3a-jars ] || [ scripts/setup.sh -nt .stamps/s3a-jars ] || [ ! -d .jars/s3a ]; then
  echo "==> S3A connector jars into .jars/s3a/"
  rm -rf .jars/s3a && mkdir -p .jars/s3a
  for artifact in "${S3A_JARS[@]}"; do
    mvn -q -B dependency:copy -Dartifact="$artifact" -DoutputDirectory=.jars/s3a
  done
  touch .stamps/s3a-jars
fi

if [ ! -f .stamps/airflow-db ] || [ requirements.txt -nt .stamps/airflow-db ]; then
  echo "==> Airflow metadata database (.airflow/airflow.db)"
  AIRFLOW_HOME="$PWD/.airflow" AIRFLOW__CORE__LOAD_EXAMPLES=False .venv/bin/airflow db migrate >/dev/null
  touch .stamps/airflow-db
fi
# Test servers for the file destinations (tests/servers/): sshd for SFTP, Azurite for Azure Blob. moto and
# fake-gcs-server come with the Python requirements.
[ -x /usr/sbin/sshd ] || apt_install openssh-server
command -v npm >/dev/null || apt_install nodejs npm
# The Activation dashboard's browser test (tests/e2e/dashboard_browser.py): Debian's Chromium and its driver.
command -v chromedriver >/dev/null || apt_install chromium chromium-driver
# The real-scheduler e2e keeps Airflow's metadata in PostgreSQL (tests/servers/postgres.py starts Debian's server).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || apt_install postgresql
if [ ! -f .stamps/azurite ] || [ tests/servers/npm/package-lock.json -nt .stamps/azurite ] \
    || [ ! -x .cache/npm/node_modules/.bin/azurite-blob ]; then
  echo "==> Azurite (npm) into .cache/npm"
  mkdir -p .cache/npm
  cp tests/servers/npm/package.json tests/servers/npm/package-lock.json .cache/npm/
  npm ci --prefix .cache/npm --no-audit --no-fund --loglevel=error >/dev/null
  touch .stamps/azurite
fi
# Test endpoint of the kafka streaming destination: one Apache Kafka broker (KRaft) from its Maven Central jars,
# resolved once into .cache/kafka/libs (tests/servers/streaming.py runs it offline from there).
if [ ! -f .stamps/kafka ] || [ scripts/kafka/pom.xml -nt .stamps/kafka ] || [ ! -d .cache/kafka/libs ]; then
  echo "==> Kafka broker jars into .cache/kafka/libs"
  rm -rf .cache/kafka/libs && mkdir -p .cache/kafka
  (cd scripts/kafka && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory=../../.cache/kafka/libs)
  touch .stamps/kafka
fi
echo "==> setup complete"
