"""The `whisperstream` command line."""
