"""The Prometheus HTTP API without Airflow: the endpoint, the client and its one retry policy, the
answer check, errors and refusals, splitting."""
