"""The campaign spec a manager writes (JSON or YAML; the campaign DAG's form has the same fields)
and the checks it must pass before any work starts.

Two kinds of checks, both before anything is scored or written:

- :class:`CampaignSpec` itself: types, ranges and cross-field rules that need no data (end
  after start, budget > 0, a holdout fraction in (0, 0.5], known promotion types).
- :func:`check_against_data`: rules that need the shop's data (the start not earlier than the
  data's as-of time, SKUs that exist) and the caller (the campaign id it was asked for).

Every failure is a :class:`SpecError` (a :class:`~flashsale_ml.errors.DataError`: never worth a
retry) whose message names the field, the rule and the offending value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flashsale_ml.contract import PROMO_TYPES
from flashsale_ml.errors import DataError

MAX_HOLDOUT_FRACTION = 0.5


class SpecError(DataError):
    """A campaign spec that cannot be planned; the message names the field and the rule."""


class Exclusions(BaseModel):
    """Who is never targeted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_ids: tuple[int, ...] = Field(
        default=(), description="pseudonymous user ids (e.g. staff, complaints, opt-outs)"
    )
    bots: bool = Field(
        default=True, description="exclude accounts the bot rule flags (shared devices / IPs)"
    )
    max_accounts_per_device: int = Field(
        default=5,
        ge=1,
        description="an account seen on a device or IP shared by more accounts than this is "
        "treated as a bot",
    )

    @field_validator("user_ids")
    @classmethod
    def _sorted_ids(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))


class CampaignSpec(BaseModel):
    """What a campaign manager asks for.

    Promotion types map to their unit cost: what one redemption costs the shop (the coupon's
    value, the gift's cost). The expected cost of offering type k to a user is that unit cost
    times the user's purchase probability with the offer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    start: datetime
    end: datetime
    skus: tuple[int, ...] = Field(min_length=1, description="item_ids on sale")
    promotions: dict[str, float] = Field(
        min_length=1, description="allowed promotion type -> unit cost per redemption"
    )
    discount_depths: tuple[float, ...] = Field(
        default=(0.3,),
        min_length=1,
        description="candidate sale-wide discount depths; the plan picks the one with the "
        "highest expected incremental margin",
    )
    budget: float = Field(description="total expected incentive spend allowed")
    holdout_fraction: float = Field(default=0.1)
    exploration_share: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="share of targeted users given a random promotion type, so that future "
        "uplift models keep learning from randomized data",
    )
    exclusions: Exclusions = Field(default_factory=Exclusions)
    max_promotions_per_user: int = Field(default=1)
    service_level: float = Field(
        default=0.9,
        gt=0.0,
        lt=1.0,
        description="the stock plan's target: the chance that a SKU's stock covers its demand",
    )

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() != timedelta(0):
            raise ValueError("must be a UTC time, e.g. 2026-02-01T19:00:00Z")
        return value

    @field_validator("budget")
    @classmethod
    def _positive_budget(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"the budget must be > 0, got {value}")
        return value

    @field_validator("holdout_fraction")
    @classmethod
    def _holdout(cls, value: float) -> float:
        if not 0 < value <= MAX_HOLDOUT_FRACTION:
            raise ValueError(
                f"the holdout fraction must be in (0, {MAX_HOLDOUT_FRACTION}], got {value}: "
                "without a holdout the campaign cannot be measured, and more than half held "
                "out wastes the campaign"
            )
        return value

    @field_validator("promotions")
    @classmethod
    def _known_promotions(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(PROMO_TYPES))
        if unknown:
            raise ValueError(
                f"unknown promotion type(s) {unknown}; known: {', '.join(PROMO_TYPES)}"
            )
        negative = {k: v for k, v in value.items() if not v >= 0}
        if negative:
            raise ValueError(f"unit costs must be >= 0, got {negative}")
        # Contract order, so the same spec written in another order plans the same bytes.
        return {k: float(value[k]) for k in PROMO_TYPES if k in value}

    @field_validator("discount_depths")
    @classmethod
    def _depths(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        bad = [d for d in value if not 0 <= d < 1]
        if bad:
            raise ValueError(f"discount depths must be in [0, 1), got {bad}")
        return tuple(sorted(set(value)))

    @field_validator("skus")
    @classmethod
    def _sorted_skus(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @field_validator("max_promotions_per_user")
    @classmethod
    def _one_promotion(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"at most one promotion per user is supported, got {value}")
        return value

    @model_validator(mode="after")
    def _window(self) -> CampaignSpec:
        if self.end <= self.start:
            raise ValueError(
                f"end {self.end:%Y-%m-%dT%H:%M:%SZ} is not after start "
                f"{self.start:%Y-%m-%dT%H:%M:%SZ}"
            )
        return self

    def canonical_json(self) -> str:
        """The spec as sorted, compact JSON: what the plan's digest and lineage record."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def parse_spec(payload: Mapping[str, Any], source: str = "the campaign spec") -> CampaignSpec:
    """A :class:`CampaignSpec` from a mapping (a parsed file, or the DAG's form).

    Raises:
        SpecError: naming every field that is wrong, and why.
    """
    try:
        return CampaignSpec.model_validate(dict(payload))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "(spec)"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{field}: {message}")
        raise SpecError(f"{source} is invalid: " + "; ".join(problems)) from None


def load_spec(path: str | Path) -> CampaignSpec:
    """Read a campaign spec from a JSON or YAML file.

    Raises:
        SpecError: the file cannot be read or parsed, or the spec is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read campaign spec {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            payload = yaml.safe_load(text)
        else:
            payload = json.loads(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: the parser's own words
        raise SpecError(
            f"campaign spec {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}"
        ) from None
    if not isinstance(payload, Mapping):
        raise SpecError(f"campaign spec {path} must be a mapping of fields, got {type(payload)}")
    return parse_spec(payload, source=f"campaign spec {path}")


def check_against_data(
    spec: CampaignSpec,
    *,
    data_as_of: datetime | None,
    known_skus: Iterable[int],
    campaign_id: str | None = None,
    past_campaigns: Iterable[str] = (),
) -> None:
    """The rules that need the data and the caller.

    Args:
        spec: the parsed spec.
        data_as_of: when the data was extracted; a campaign cannot start before it (its
            features would read events after its start).
        known_skus: the item_ids of the data's catalogue.
        campaign_id: the campaign the caller asked to plan (the CLI's or the DAG run's), if any.
        past_campaigns: campaign ids that already ran in the data.

    Raises:
        SpecError: every rule broken, in one message.
    """
    problems = []
    if campaign_id is not None and campaign_id != spec.campaign_id:
        problems.append(
            f"campaign_id: the spec says {spec.campaign_id!r} but the call asked for "
            f"{campaign_id!r}"
        )
    if data_as_of is not None and spec.start < data_as_of:
        problems.append(
            f"start: {spec.start:%Y-%m-%dT%H:%M:%SZ} is earlier than the data's as-of time "
            f"{data_as_of:%Y-%m-%dT%H:%M:%SZ}; a plan can only be made for a campaign that "
            "starts after the data it is scored on"
        )
    unknown = sorted(set(spec.skus) - set(known_skus))
    if unknown:
        shown = ", ".join(str(s) for s in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        problems.append(f"skus: unknown SKU(s) {shown}{more}: not in the items table")
    if spec.campaign_id in set(past_campaigns):
        problems.append(
            f"campaign_id: {spec.campaign_id!r} already ran in the data; plan a new campaign id"
        )
    if problems:
        raise SpecError(f"campaign spec {spec.campaign_id!r}: " + "; ".join(problems))
