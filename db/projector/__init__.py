"""The projector service: Kafka topics folded into Postgres (``whisperstream projector``)."""
