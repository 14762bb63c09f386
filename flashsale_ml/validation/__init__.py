"""Data validation: nothing downstream runs on data that breaks the contract."""

from flashsale_ml.validation.report import (
    DataValidationError,
    ValidationReport,
    latest_validation,
    validate_snapshot,
)

__all__ = ["DataValidationError", "ValidationReport", "latest_validation", "validate_snapshot"]
