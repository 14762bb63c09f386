"""The pre-sale retraining schedule: every day at a fixed hour, and N hours before each campaign
on the calendar, whichever comes first.

A custom Timetable (Airflow's ``Timetable`` interface), registered by
:mod:`flashsale_plugin` so the scheduler can rebuild it from the serialized DAG. The calendar is
a list of campaign starts read when the DAG file is parsed (a small JSON or YAML file named by
``FLASHSALE_CAMPAIGN_CALENDAR``), so the scheduler itself never does I/O to plan a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, Timetable


def _utc(value: datetime | str) -> pendulum.DateTime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"campaign start {value} has no time zone; write it in UTC (…Z)")
    return pendulum.instance(value.astimezone(UTC))


class PresaleTimetable(Timetable):
    """Runs daily at ``daily_hour`` UTC and ``hours_before`` hours before each campaign start.

    Args:
        daily_hour: the hour (0-23, UTC) of the daily run.
        campaign_starts: the calendar: when each scheduled campaign starts (UTC).
        hours_before: how long before a campaign's start its retraining runs.
    """

    def __init__(
        self,
        daily_hour: int = 3,
        campaign_starts: Iterable[datetime | str] = (),
        hours_before: float = 6.0,
    ) -> None:
        if not 0 <= daily_hour <= 23:
            raise ValueError(f"daily_hour must be 0-23, got {daily_hour}")
        if hours_before < 0:
            raise ValueError(f"hours_before must be >= 0, got {hours_before}")
        self.daily_hour = int(daily_hour)
        self.hours_before = float(hours_before)
        self.campaign_starts = sorted({_utc(s) for s in campaign_starts})
        self.presale_times = [s - timedelta(hours=self.hours_before) for s in self.campaign_starts]
        self.description = (
            f"daily at {self.daily_hour:02d}:00 UTC and {self.hours_before:g} h before each of "
            f"{len(self.campaign_starts)} calendar campaign(s)"
        )

    @property
    def summary(self) -> str:
        return f"daily {self.daily_hour:02d}:00 + {len(self.campaign_starts)} pre-sale"

    def _next_daily(self, after: pendulum.DateTime, inclusive: bool) -> pendulum.DateTime:
        candidate = after.replace(hour=self.daily_hour, minute=0, second=0, microsecond=0)
        if candidate < after or (candidate == after and not inclusive):
            candidate = candidate + timedelta(days=1)
        return candidate

    def next_run_after(
        self, after: pendulum.DateTime, inclusive: bool = False
    ) -> pendulum.DateTime:
        """The first run time after ``after`` (at it, when ``inclusive``)."""
        candidates = [self._next_daily(after, inclusive)]
        for when in self.presale_times:
            if when > after or (inclusive and when == after):
                candidates.append(when)
                break
        return min(candidates)

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction
    ) -> DagRunInfo | None:
        if last_automated_data_interval is not None:
            start, inclusive = last_automated_data_interval.end, False
        else:
            start, inclusive = restriction.earliest, True
            if start is None:
                return None
        if not restriction.catchup:
            now = pendulum.now("UTC")
            if start < now:
                start, inclusive = now, True
        start = pendulum.instance(start)
        nxt = self.next_run_after(start, inclusive)
        if restriction.latest is not None and nxt > restriction.latest:
            return None
        return DagRunInfo.exact(nxt)

    def infer_manual_data_interval(self, *, run_after: pendulum.DateTime) -> DataInterval:
        return DataInterval.exact(run_after)

    def serialize(self) -> dict[str, Any]:
        return {
            "daily_hour": self.daily_hour,
            "hours_before": self.hours_before,
            "campaign_starts": [s.isoformat() for s in self.campaign_starts],
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> PresaleTimetable:
        return cls(data["daily_hour"], data["campaign_starts"], data["hours_before"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PresaleTimetable) and self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash((self.daily_hour, self.hours_before, tuple(self.campaign_starts)))


def load_calendar(path: str | None) -> list[str]:
    """Campaign starts from a JSON or YAML file: a list of UTC times, or of mappings with a
    ``start`` (e.g. the campaign specs' own fields). No file (None or empty): no campaigns."""
    import json
    from pathlib import Path

    if not path:
        return []
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        entries = yaml.safe_load(text) or []
    else:
        entries = json.loads(text)
    starts = []
    for entry in entries:
        value = entry.get("start") if isinstance(entry, dict) else entry
        starts.append(value if isinstance(value, str) else value.isoformat())
    return starts
