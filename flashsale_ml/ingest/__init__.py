"""Bring your own data: a mapping file turns a shop's CSV/Parquet files into a validated,
pseudonymized snapshot (``flashsale ingest --mapping mapping.yaml``; see ``docs/ingest.md``)."""

from flashsale_ml.ingest.mapping import Mapping, MappingError, load_mapping, parse_mapping
from flashsale_ml.ingest.run import IngestDataError, IngestResult, ingest_mapping, run_ingest

__all__ = [
    "IngestDataError",
    "IngestResult",
    "Mapping",
    "MappingError",
    "ingest_mapping",
    "load_mapping",
    "parse_mapping",
    "run_ingest",
]
