"""`whisperstream up` keeps its services running: restart policy, state file, runner."""
