"""Faust agents that run Whisper on transcription requests."""
