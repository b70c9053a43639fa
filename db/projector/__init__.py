"""The projector service: Kafka topics folded into Postgres (``whisperstream projector``).

Modules: ``service`` (the consume / apply / commit loop), ``main`` (its composition
root), ``decoding`` (messages to records), ``retry`` (which database errors are waited
out), ``lag`` (lag from the fetch responses' high watermarks, Prometheus gauges, the
``projector_lag`` rows), ``offsets`` (the stored positions), ``reader`` (reading topics
to their end), ``rebuild`` (online: shadow tables swapped in under the live projector)
and ``replay`` (``whisperstream replay``), ``groups`` (is the projector's group
running?), ``operations`` (the replay composition root).

Choices, and why:

* The confluent-kafka consumer runs on one dedicated executor thread; the database side
  is asyncio.  One ``consume(N, T)`` call is one batch: up to N events or T ms.
* Postgres is the truth for positions: a batch and its ``projector_offsets`` commit in
  one transaction, every assigned partition is sought to its stored offset, and Kafka's
  offsets are committed after the database commit only as a courtesy to tools.
* Lag is written to ``projector_lag`` with each batch (and every few seconds while idle),
  so ``/admin/health`` reads it from Postgres (``db.lag_queries``) without a Kafka
  client; the projector process also serves it as a Prometheus gauge when
  ``PROJECTOR_METRICS_PORT`` is set.
* Tansu gaps worked around: ListOffsets by time answers the earliest offset, so
  ``--from-time`` reads the partitions; DescribeGroups lists no members, so the group's
  state decides whether the projector is running.
"""
