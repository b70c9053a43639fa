"""Operator tooling."""
