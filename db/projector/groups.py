"""Is the projector's consumer group running?  Replay from a time or offsets needs it
stopped (a rebuild does not: see ``rebuild``).

Tansu 0.6 answers DescribeGroups with the right state (STABLE while a member is in,
EMPTY after it left) but with an empty member list, so the state decides here.  A
projector killed without leaving stays STABLE until its session times out (6 s).
"""

from __future__ import annotations

from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from db.errors import ProjectorGroupActiveError
from whisperstream.kafka_security import KafkaConnection, as_connection

_ACTIVE = frozenset(
    {
        ConsumerGroupState.STABLE,
        ConsumerGroupState.PREPARING_REBALANCING,
        ConsumerGroupState.COMPLETING_REBALANCING,
    }
)


def ensure_group_inactive(
    kafka: KafkaConnection | str, group_id: str, timeout_s: float = 15
) -> None:
    """Raise :class:`ProjectorGroupActiveError` if ``group_id`` has (or may have) members."""
    admin = AdminClient(as_connection(kafka).client_config())
    future = admin.describe_consumer_groups([group_id], request_timeout=timeout_s)[group_id]
    try:
        description = future.result(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            return
        raise
    if description.state in _ACTIVE or description.members:
        raise ProjectorGroupActiveError(
            f"consumer group {group_id!r} is {description.state.name.lower()}: stop every "
            "`whisperstream projector` first (a killed one leaves after its 6 s session timeout)"
        )
