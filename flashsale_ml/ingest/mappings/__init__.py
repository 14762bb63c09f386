"""The public datasets as mapping files (``<name>.yaml`` in this folder).

Each packaged mapping turns one real public file (``../shared/data``) into the same contract
tables as its loader in :mod:`flashsale_ml.loaders`, through the ordinary mapping ingest plus,
where a row-by-row mapping is not enough, a small named transform
(:mod:`flashsale_ml.ingest.transforms`). ``flashsale ingest --dataset NAME`` still runs the
loaders; these show that the mapping covers real data (``docs/ingest.md``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flashsale_ml.ingest.mapping import Mapping, load_mapping
from flashsale_ml.storage import ObjectStore

HERE = Path(__file__).resolve().parent


def public_mappings() -> list[str]:
    """Names of the packaged mappings (``hillstrom``, ...)."""
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def public_mapping(name: str, path: Path | str) -> Mapping:
    """The packaged mapping ``name``, reading its source from ``path`` (a file or ``s3://``).

    Raises:
        KeyError: no packaged mapping of that name.
        MappingError: the packaged file breaks a rule (a bug here, not in the data).
    """
    file = HERE / f"{name}.yaml"
    if not file.is_file():
        raise KeyError(f"no packaged mapping {name!r}; choose from {public_mappings()}")
    mapping = load_mapping(file)
    where = str(path) if str(path).startswith("s3://") else str(Path(path).resolve())
    for table in mapping.tables.values():
        if table.source is not None:
            table.source.path = where
    return mapping


def ingest_public(
    name: str,
    path: Path | str,
    lake: ObjectStore,
    pseudonym_key: str | None = None,
    *,
    now: datetime | None = None,
) -> str:
    """Ingest a public dataset through its packaged mapping; returns the snapshot URI."""
    from flashsale_ml.ingest.run import ingest_mapping

    return ingest_mapping(public_mapping(name, path), lake, pseudonym_key, now=now)
