"""whisperstream: a self-hosted, Kafka-native speech transcription service."""
