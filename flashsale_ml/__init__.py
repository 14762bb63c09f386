"""flashsale-ml: machine learning for e-commerce flash sales, orchestration-free.

Airflow DAGs in ``dags/`` call the functions of this package; the package never imports
Airflow, so everything here runs and tests without a scheduler.
"""

__version__ = "0.1.0"
