"""Object storage over a local folder (``file://``) or S3 (``s3://``, boto3 over HTTP).

This is the only module that talks to storage. Everything above it speaks in keys relative to a
root URI. S3 is configured the standard AWS way: the endpoint from ``AWS_ENDPOINT_URL`` (MinIO,
moto's server, or real S3 when unset) and credentials from boto3's default chain.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class StorageError(RuntimeError):
    """Base class of every storage failure; the message always names the URI involved."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """The key does not exist under the store's root."""


class StorageUnreachableError(StorageError, ConnectionError):
    """The storage endpoint could not be reached or refused the credentials."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key (relative to the store's root), size and last change (UTC)."""

    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class UploadInfo:
    """An unfinished multipart upload: its key, id and start time (UTC)."""

    key: str
    upload_id: str
    initiated: datetime


class ObjectStore(ABC):
    """A flat key space under a root URI. Keys use ``/`` and never start with one."""

    root_uri: str

    def uri(self, key: str = "") -> str:
        return f"{self.root_uri}/{key}" if key else self.root_uri

    def child(self, prefix: str) -> ObjectStore:
        """A store rooted at ``prefix`` below this one."""
        return open_store(self.uri(prefix.strip("/")))

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write one object; readers see either the old or the new content, never a mix."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys (relative to the root) of all objects below ``prefix``, sorted."""

    @abstractmethod
    def list_info(self, prefix: str = "") -> list[ObjectInfo]:
        """Like :meth:`list`, with each object's size and last modification time."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object below ``prefix``; returns how many were deleted."""

    def list_uploads(self, prefix: str = "") -> list[UploadInfo]:
        """Unfinished multipart uploads below ``prefix`` (none on stores without them).

        They are invisible to readers but keep their parts (and their cost) until aborted;
        a writer killed during a large upload leaves one behind.
        """
        return []

    def abort_upload(self, upload: UploadInfo) -> None:
        """Abort one unfinished multipart upload."""
        raise StorageError(f"{self.uri(upload.key)}: this store has no multipart uploads")

    @abstractmethod
    def upload_file(self, local_path: Path, key: str) -> None: ...

    @abstractmethod
    def download_file(self, key: str, local_path: Path) -> None: ...

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The file behind ``key`` when the store is a local folder, else None."""

    @property
    @abstractmethod
    def renames_atomically(self) -> bool:
        """Whether a staged prefix can be published by one atomic rename."""

    @abstractmethod
    def rename_prefix(self, src: str, dst: str) -> None: ...


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root_uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise StorageError(f"key {key!r} escapes the store root {self.root_uri}")
        return path

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object at {self.uri(key)}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            return [prefix]
        if not base.exists():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def list_info(self, prefix: str = "") -> list[ObjectInfo]:
        infos = []
        for key in self.list(prefix):
            try:
                stat = self._path(key).stat()
            except FileNotFoundError:  # removed since it was listed
                continue
            infos.append(ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
        return infos

    def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix)
        if path.is_file():
            path.unlink()
            return 1
        if not path.exists():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path)
        return count

    def upload_file(self, local_path: Path, key: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, path)

    def download_file(self, key: str, local_path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), local_path)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object at {self.uri(key)}") from None

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    @property
    def renames_atomically(self) -> bool:
        return True

    def rename_prefix(self, src: str, dst: str) -> None:
        target = self._path(dst)
        if target.exists():
            raise StorageError(f"refusing to overwrite existing {self.uri(dst)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self._path(src), target)


def make_s3_client() -> S3Client:
    """The one place an S3 client is built: endpoint and credentials follow AWS conventions."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        config=Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
    )


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root_uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = make_s3_client()
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn, *args, **kwargs):
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise ObjectNotFoundError(f"no object at {self.uri(key)}") from None
            if code == "NoSuchBucket":
                raise ObjectNotFoundError(
                    f"bucket {self.bucket!r} does not exist ({what} {self.uri(key)})"
                ) from None
            raise StorageError(f"S3 {what} failed for {self.uri(key)}: {code} {exc}") from exc
        except (EndpointConnectionError, NoCredentialsError) as exc:
            endpoint = os.environ.get("AWS_ENDPOINT_URL", "<AWS default>")
            raise StorageUnreachableError(
                f"cannot reach S3 for {what} {self.uri(key)} (AWS_ENDPOINT_URL={endpoint}): {exc}"
            ) from exc

    def read_bytes(self, key: str) -> bytes:
        response = self._call(
            "get", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key)
        )
        return response["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic in S3: readers see the old object or the new one.
        self._call(
            "put", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data
        )

    def exists(self, key: str) -> bool:
        try:
            self._call("head", key, self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        except ObjectNotFoundError:
            return False
        return True

    def _iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self._key(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(
            "list", prefix, lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full))
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in pages:
            for obj in page.get("Contents", []):
                yield ObjectInfo(obj["Key"][strip:], int(obj["Size"]), obj["LastModified"])

    def list(self, prefix: str = "") -> list[str]:
        return sorted(info.key for info in self._iter_objects(prefix))

    def list_info(self, prefix: str = "") -> list[ObjectInfo]:
        return sorted(self._iter_objects(prefix), key=lambda info: info.key)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self._call(
                "delete",
                prefix,
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
        return len(keys)

    def list_uploads(self, prefix: str = "") -> list[UploadInfo]:
        full = self._key(prefix)
        paginator = self.client.get_paginator("list_multipart_uploads")
        pages = self._call(
            "list uploads",
            prefix,
            lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full)),
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        return [
            UploadInfo(upload["Key"][strip:], upload["UploadId"], upload["Initiated"])
            for page in pages
            for upload in page.get("Uploads", [])
        ]

    def abort_upload(self, upload: UploadInfo) -> None:
        self._call(
            "abort upload",
            upload.key,
            self.client.abort_multipart_upload,
            Bucket=self.bucket,
            Key=self._key(upload.key),
            UploadId=upload.upload_id,
        )

    def upload_file(self, local_path: Path, key: str) -> None:
        # upload_file switches to multipart for large files; S3 only exposes the object
        # once the upload completes, so a failed upload leaves nothing visible.
        self._call(
            "upload", key, self.client.upload_file, str(local_path), self.bucket, self._key(key)
        )

    def download_file(self, key: str, local_path: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call(
                "download",
                key,
                self.client.download_file,
                self.bucket,
                self._key(key),
                str(local_path),
            )
        except ClientError as exc:  # download_file raises a bare 404 ClientError
            raise ObjectNotFoundError(f"no object at {self.uri(key)}") from exc

    def local_path(self, key: str) -> Path | None:
        return None

    @property
    def renames_atomically(self) -> bool:
        return False

    def rename_prefix(self, src: str, dst: str) -> None:
        raise StorageError("S3 has no atomic rename; publish with a manifest instead")


def open_store(uri: str) -> ObjectStore:
    """Open the store behind ``file:///abs/path``, ``s3://bucket/prefix`` or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "":
        return LocalStore(Path(uri).expanduser())
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"S3 URI without a bucket: {uri!r}")
        return S3Store(parsed.netloc, parsed.path)
    raise StorageError(
        f"unsupported storage URI {uri!r}: use file:///abs/path or s3://bucket/prefix"
    )


SCRATCH_PREFIX = "flashsale-"
# <prefix><owner pid>-<mkdtemp suffix>, e.g. flashsale-validation-4711-k3j2h1g0; folders made
# before the pid was part of the name have none.
_SCRATCH_NAME = re.compile(r"^flashsale-(?:[a-z]+-)*?(?:(?P<pid>\d+)-)?[a-z0-9_]{8}$")


def scratch_dir(prefix: str = SCRATCH_PREFIX) -> Path:
    """A private temporary folder for staging downloads and uploads.

    The owner's process id is part of the name, so :func:`collect_stale_scratch` can tell the
    leftovers of a killed process from the folders of one that is still running. Whoever
    creates one removes it (in a ``finally``); a process killed with SIGKILL cannot.
    """
    if not prefix.startswith(SCRATCH_PREFIX):
        prefix = SCRATCH_PREFIX + prefix
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


@contextmanager
def temporary_scratch(prefix: str = SCRATCH_PREFIX) -> Iterator[Path]:
    """A :func:`scratch_dir` that is removed when the block ends, however it ends."""
    path = scratch_dir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    for child in path.rglob("*"):
        try:
            newest = max(newest, child.lstat().st_mtime)
        except FileNotFoundError:
            continue
    return newest


def collect_stale_scratch(
    older_than_s: float, now: float | None = None, dry_run: bool = False
) -> list[Path]:
    """Remove scratch folders (:func:`scratch_dir`) left behind by processes that died.

    A folder goes only when nothing in it changed for ``older_than_s`` seconds and the process
    named in it no longer runs on this machine. Returns the folders removed (or, with
    ``dry_run``, those that would be).
    """
    import time

    now = time.time() if now is None else now
    root = Path(tempfile.gettempdir())
    removed = []
    for path in sorted(root.glob(f"{SCRATCH_PREFIX}*")):
        match = _SCRATCH_NAME.match(path.name)
        if not match or not path.is_dir() or path.is_symlink():
            continue
        if match["pid"] and _process_alive(int(match["pid"])):
            continue
        try:
            if now - _newest_mtime(path) < older_than_s:
                continue
        except FileNotFoundError:
            continue
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
