"""The Airflow 3.1+ plugin: the fleet page (a FastAPI app and a navigation entry)."""
