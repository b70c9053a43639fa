"""`whisperstream topics apply | list`."""

from __future__ import annotations

import typer
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.table import Table

from ops.kafka.topics import apply_topics, default_topic_specs
from whisperstream.cli.common import console, settings_for

app = typer.Typer(help="Kafka topics as code.", no_args_is_help=True)


@app.command("apply")
def apply_cmd() -> None:
    """Create missing topics; report differences on existing ones."""
    settings = settings_for()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
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
    bootstrap = settings.kafka_bootstrap_servers
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "_whisperstream.topics"})
    table = Table("topic", "partitions", "end offsets")
    try:
        for name in sorted(metadata.topics):
            partitions = sorted(metadata.topics[name].partitions)
            ends = [
                consumer.get_watermark_offsets(TopicPartition(name, p), timeout=5)[1]
                for p in partitions
            ]
            table.add_row(name, str(len(partitions)), " ".join(str(e) for e in ends))
    finally:
        consumer.close()
    console.print(table)
