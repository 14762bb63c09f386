"""The flashsale Airflow plugin: the pre-sale retraining timetable, and an "MLflow run" button
on every task that logged one.

A task that logged to MLflow stores its run's URL as an XCom under
:data:`flashsale_dag_support.MLFLOW_LINK_KEY`; the global extra link reads it back in the API
server, so the button appears on the task's page (Details → Extra Links).
"""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from flashsale_dag_support import MLFLOW_LINK_KEY
from flashsale_timetables import PresaleTimetable


class MlflowRunLink(BaseOperatorLink):
    """Opens the MLflow run a task logged (empty for tasks that logged none)."""

    name = "MLflow run"

    @property
    def xcom_key(self) -> str:
        return MLFLOW_LINK_KEY

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = session.execute(
                XComModel.get_many(
                    key=MLFLOW_LINK_KEY,
                    run_id=ti_key.run_id,
                    dag_ids=ti_key.dag_id,
                    task_ids=ti_key.task_id,
                    map_indexes=ti_key.map_index,
                ).with_only_columns(XComModel.value)
            ).first()
        if not row:
            return ""
        value = (
            XComModel.deserialize_value(row) if hasattr(XComModel, "deserialize_value") else row[0]
        )
        return value if isinstance(value, str) else ""


class FlashsalePlugin(AirflowPlugin):
    name = "flashsale"
    timetables: ClassVar[list] = [PresaleTimetable]
    global_operator_extra_links: ClassVar[list] = [MlflowRunLink()]
