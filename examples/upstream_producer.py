"""An upstream system submitting a transcription job straight to Kafka.

It uses only public libraries and the `.avsc` file, never whisperstream's own code:
upload the audio to the `audio` bucket, then produce a `TranscriptionRequested` in Avro
single-object encoding, keyed by the job id. Prints the job id.

    python examples/upstream_producer.py jfk.flac --bootstrap 127.0.0.1:9092 \
        --s3-endpoint http://127.0.0.1:8333
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import mimetypes
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fastavro
from confluent_kafka import Producer
from minio import Minio

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas" / "avro" / "TranscriptionRequested"


def current_schema() -> dict[str, Any]:
    newest = max(SCHEMA_DIR.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
    parsed = fastavro.parse_schema(json.loads(newest.read_text()))
    if not isinstance(parsed, dict):
        raise TypeError(f"{newest} is not a record schema")
    return parsed


def single_object(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    # fastavro returns the fingerprint's bytes already in the header's little-endian order
    header = b"\xc3\x01" + bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, record)
    return header + body.getvalue()


def upload(args: argparse.Namespace, job_id: str, path: Path) -> tuple[str, int, str]:
    endpoint = urlsplit(args.s3_endpoint)
    client = Minio(
        endpoint.netloc,
        access_key=args.access_key,
        secret_key=args.secret_key,
        secure=endpoint.scheme == "https",
    )
    data = path.read_bytes()
    key = f"uploads/{job_id}/{path.name}"
    client.put_object(args.bucket, key, io.BytesIO(data), len(data))
    return f"s3://{args.bucket}/{key}", len(data), hashlib.sha256(data).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", type=Path)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="transcription.requests.normal")
    parser.add_argument("--s3-endpoint", default="http://127.0.0.1:8333")
    parser.add_argument("--access-key", default="whisperstream")
    parser.add_argument("--secret-key", default="whisperstream-secret")
    parser.add_argument("--bucket", default="audio")
    parser.add_argument("--priority", choices=("high", "normal"), default="normal")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--language", default=None)
    parser.add_argument("--owner", default=None)
    args = parser.parse_args()

    job_id = str(uuid.uuid4())
    uri, size, sha256 = upload(args, job_id, args.audio)
    record = {
        "event_id": str(uuid.uuid4()),
        "job_id": job_id,
        "occurred_at": datetime.now(UTC),
        "priority": args.priority,
        "attempt": 1,
        "not_before": None,
        "audio": {
            "uri": uri,
            "size_bytes": size,
            "sha256": sha256,
            "content_type": mimetypes.guess_type(args.audio.name)[0] or "application/octet-stream",
            "original_filename": args.audio.name,
        },
        "model": args.model,
        "engine": None,
        "language": args.language,
        "task": "transcribe",
        "options": {
            "initial_prompt": None,
            "word_timestamps": False,
            "temperature": 0.0,
            "beam_size": None,
            "vad_filter": False,
        },
        "owner": args.owner,
        "idempotency_key": None,
        "callback_url": None,
        "source": "kafka",
        "correlation_id": None,
    }
    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "enable.idempotence": True, "acks": "all"}
    )
    errors: list[str] = []
    producer.produce(
        args.topic,
        key=job_id.encode(),
        value=single_object(current_schema(), record),
        on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
    )
    remaining = producer.flush(30)
    if remaining or errors:
        raise SystemExit(f"not delivered: {errors or 'timeout'}")
    print(job_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
