"""Calendar features of a sale: distance to the next shopping holiday."""

from __future__ import annotations

from datetime import date, datetime, timedelta


def _black_friday(year: int) -> date:
    """The day after the fourth Thursday of November (US Thanksgiving).

    "First Friday + 3 weeks" is a week early whenever 1 November is a Friday (2019, 2024).
    """
    november_first = date(year, 11, 1)
    first_thursday = november_first + timedelta(days=(3 - november_first.weekday()) % 7)
    return first_thursday + timedelta(weeks=3, days=1)


def shopping_holidays(year: int) -> list[date]:
    """Days that move e-commerce demand: New Year, Valentine's, Singles' Day, Black Friday,
    Cyber Monday, Christmas."""
    black_friday = _black_friday(year)
    return sorted(
        [
            date(year, 1, 1),
            date(year, 2, 14),
            date(year, 11, 11),
            black_friday,
            black_friday + timedelta(days=3),
            date(year, 12, 25),
        ]
    )


def days_to_next_holiday(ts: datetime) -> float:
    """Days from ``ts`` to the start of the next shopping holiday (0 on the day itself)."""
    day = ts.date()
    for holiday in shopping_holidays(day.year) + shopping_holidays(day.year + 1):
        if holiday >= day:
            start = datetime(holiday.year, holiday.month, holiday.day, tzinfo=ts.tzinfo)
            return max(0.0, (start - ts).total_seconds() / 86_400)
    raise AssertionError("unreachable: next year always has holidays")
