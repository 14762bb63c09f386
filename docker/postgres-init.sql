-- MLflow gets its own database next to Airflow's.
CREATE DATABASE mlflow OWNER airflow;
