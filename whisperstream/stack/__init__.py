"""The embedded local stack: Tansu, SeaweedFS and Postgres on loopback."""
