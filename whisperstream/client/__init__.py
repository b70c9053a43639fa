"""A small client of the whisperstream HTTP API, for the CLI."""
