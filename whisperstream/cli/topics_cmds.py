"""`whisperstream topics apply | list`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import typer
from confluent_kafka.admin import AdminClient
from rich.table import Table

from ops.kafka.offsets import Partition, high_watermarks
from ops.kafka.topics import apply_topics, default_topic_specs
from whisperstream.cli.common import console, settings_for
from whisperstream.kafka_security import KafkaConnection

app = typer.Typer(help="Kafka topics as code.", no_args_is_help=True)


@app.command("apply")
def apply_cmd() -> None:
    """Create missing topics; report differences on existing ones."""
    settings = settings_for()
    admin = AdminClient(KafkaConnection.from_settings(settings).client_config())
    report = apply_topics(admin, default_topic_specs(settings))
    for name in report.created:
        console.print(f"created   {name}")
    for name in report.unchanged:
        console.print(f"unchanged {name}")
    for diff in report.differences:
        console.print(f"differs   {diff.topic}: {diff.what} wanted {diff.wanted}, is {diff.actual}")


@app.command("list")
def list_cmd() -> None:
    """Show each topic with its partitions and end offsets."""
    settings = settings_for()
    kafka = KafkaConnection.from_settings(settings)
    metadata = AdminClient(kafka.client_config()).list_topics(timeout=10)
    layout = {name: sorted(meta.partitions) for name, meta in metadata.topics.items()}
    ends = high_watermarks(kafka, [(t, p) for t, parts in layout.items() for p in parts])
    table = Table("topic", "partitions", "end offsets")
    for name in sorted(layout):
        table.add_row(name, str(len(layout[name])), end_offsets_text(ends, name, layout[name]))
    console.print(table)


def end_offsets_text(
    ends: Mapping[Partition, int | None], topic: str, partitions: Iterable[int]
) -> str:
    """The end offset of each partition, or 'unknown' where none could be read."""
    found = (ends.get((topic, p)) for p in partitions)
    return " ".join("unknown" if end is None else str(end) for end in found)
