"""The one distinction orchestration needs from this package: bad input versus a passing fault.

A :class:`DataError` means the data (or the request) is wrong: running the same step again on
the same input fails the same way, so retrying only delays the red light and the person who
has to fix it. Orchestrators fail such a step at once (the Airflow DAGs map it to
``AirflowFailException``); every other exception keeps its retries, since a timeout or a
refused connection may well pass.
"""

from __future__ import annotations


class DataError(ValueError):
    """Input that breaks the data contract or a step's preconditions; never worth a retry.

    Subclasses name the table, column and rule in their message.
    """
