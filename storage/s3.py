"""``ObjectStore``: the few S3 operations whisperstream needs, typed, over ``minio``.

The API is synchronous (minio is); async callers run it in a thread.  Every minio or
network error is raised as one of the storage package's errors.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from storage.errors import ObjectNotFoundError, StorageUnavailableError
from storage.keys import S3Uri
from whisperstream.settings import Settings

T = TypeVar("T")

MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = MIN_PART_SIZE
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"})


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    uri: S3Uri
    size: int
    etag: str | None
    content_type: str | None
    last_modified: datetime | None


class ObjectStore:
    """S3 objects addressed by :class:`S3Uri`. Call :meth:`close` when done."""

    def __init__(
        self,
        endpoint: str,
        *,
        access_key: str,
        secret_key: str,
        region: str,
        secure: bool,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
        retries: int = 2,
        ca_file: Path | None = None,
        verify_tls: bool = True,
    ) -> None:
        # an https endpoint's certificate is checked against ca_file, else the system CAs
        self._http = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE",
            ca_certs=str(ca_file) if ca_file is not None else None,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            maxsize=16,
            retries=urllib3.Retry(
                total=retries, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)
            ),
        )
        self._client: Any = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=self._http,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> ObjectStore:
        host, port = settings.s3_host_port
        return cls(
            f"{host}:{port}",
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(),
            region=settings.s3_region,
            secure=settings.s3_secure,
            ca_file=settings.s3_ca_file,
            verify_tls=settings.s3_verify_tls,
            **options,
        )

    def close(self) -> None:
        self._http.clear()

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # buckets ---------------------------------------------------------------------

    def bucket_exists(self, bucket: str) -> bool:
        return bool(self._call(f"s3://{bucket}", lambda: self._client.bucket_exists(bucket)))

    def ensure_bucket(self, bucket: str) -> None:
        if not self.bucket_exists(bucket):
            self._call(f"s3://{bucket}", lambda: self._client.make_bucket(bucket))

    # writing ---------------------------------------------------------------------

    def put_bytes(
        self, uri: S3Uri, data: bytes, content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        self._call(
            str(uri),
            lambda: self._client.put_object(
                uri.bucket, uri.key, io.BytesIO(data), len(data), content_type=content_type
            ),
        )
        return ObjectInfo(uri, len(data), None, content_type, None)

    def put_json(self, uri: S3Uri, document: object) -> ObjectInfo:
        data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self.put_bytes(uri, data, "application/json")

    def put_stream(
        self,
        uri: S3Uri,
        reader: Readable,
        content_type: str = "application/octet-stream",
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        """Upload everything ``reader`` yields, of unknown length, without holding it all.

        Data up to ``part_size`` goes in one PUT; more becomes a multipart upload of
        ``part_size`` parts, uploaded one at a time (at most about two parts in memory).
        If ``reader.read`` raises, the multipart upload is aborted and the error raised.
        """
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE}, got {part_size}")
        stream: BinaryIO = reader  # type: ignore[assignment]
        self._call(
            str(uri),
            lambda: self._client.put_object(
                uri.bucket,
                uri.key,
                stream,
                -1,
                content_type=content_type,
                part_size=part_size,
                num_parallel_uploads=1,
            ),
        )

    def put_file(self, uri: S3Uri, path: Path, content_type: str) -> None:
        self._call(
            str(uri),
            lambda: self._client.fput_object(
                uri.bucket, uri.key, str(path), content_type=content_type
            ),
        )

    def delete(self, uri: S3Uri) -> None:
        """Remove the object; removing one that does not exist is not an error."""
        try:
            self._call(str(uri), lambda: self._client.remove_object(uri.bucket, uri.key))
        except ObjectNotFoundError:
            return

    # reading ---------------------------------------------------------------------

    def stat(self, uri: S3Uri) -> ObjectInfo:
        found = self._call(str(uri), lambda: self._client.stat_object(uri.bucket, uri.key))
        return ObjectInfo(
            uri=uri,
            size=int(found.size or 0),
            etag=found.etag,
            content_type=found.content_type,
            last_modified=found.last_modified,
        )

    def exists(self, uri: S3Uri) -> bool:
        try:
            self.stat(uri)
        except ObjectNotFoundError:
            return False
        return True

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (recursively)."""
        return self._call(
            f"s3://{bucket}/{prefix}",
            lambda: [
                str(obj.object_name)
                for obj in self._client.list_objects(bucket, prefix=prefix, recursive=True)
            ],
        )

    def get_bytes(self, uri: S3Uri, max_bytes: int | None = None) -> bytes:
        """The object's content; over ``max_bytes`` raises ValueError (checked first)."""
        if max_bytes is not None:
            size = self.stat(uri).size
            if size > max_bytes:
                raise ValueError(f"{uri} is {size} bytes, over the limit of {max_bytes}")

        def read() -> bytes:
            response = self._client.get_object(uri.bucket, uri.key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        return self._call(str(uri), read)

    def get_json(self, uri: S3Uri, max_bytes: int = 64 * 1024 * 1024) -> Any:
        return json.loads(self.get_bytes(uri, max_bytes))

    def download_to(self, uri: S3Uri, path: Path) -> Path:
        """Stream the object to ``path`` (created or replaced); returns ``path``."""
        self._call(str(uri), lambda: self._client.fget_object(uri.bucket, uri.key, str(path)))
        return path

    def presigned_get_url(self, uri: S3Uri, expires: timedelta = timedelta(hours=1)) -> str:
        return str(
            self._call(
                str(uri),
                lambda: self._client.presigned_get_object(uri.bucket, uri.key, expires=expires),
            )
        )

    # ------------------------------------------------------------------------------

    def _call(self, where: str, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES:
                raise ObjectNotFoundError(where) from exc
            raise StorageUnavailableError(
                f"S3 error on {where}: {exc.code}: {exc.message}"
            ) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailableError(f"S3 unreachable for {where}: {exc}") from exc
