# Image for docker-compose.yml: the platform with Java, the pinned Python packages, the Delta and S3A jars.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven gnupg make procps \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/cdp
COPY requirements.txt pyproject.toml README.md ./
COPY cdp cdp
COPY jobs jobs
COPY plugins plugins
COPY dags dags
COPY scripts scripts
COPY examples examples
# scripts/setup.sh also sets up the test servers (Azurite's npm lock file is under tests/servers/npm).
COPY tests tests
RUN PYTHON=python3.11 scripts/setup.sh
# docker-compose.yml keeps Airflow's metadata in PostgreSQL: its driver, for the image only (tests use SQLite).
RUN .venv/bin/pip install -q psycopg2-binary==2.9.13
ENV PATH=/opt/cdp/.venv/bin:$PATH \
    AIRFLOW_HOME=/opt/cdp/.airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/cdp/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/cdp/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
