"""Speech engines behind one port: faster-whisper and openai-whisper."""
