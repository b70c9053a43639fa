"""The whisperstream event contract: Avro schemas, event dataclasses and the codec."""
