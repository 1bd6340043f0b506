# Airflow with this provider installed; used by docker-compose.yaml.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root pyproject.toml README.md /opt/finout/
COPY --chown=airflow:root finout_provider /opt/finout/finout_provider
RUN pip install --no-cache-dir "/opt/finout[kubernetes]"
