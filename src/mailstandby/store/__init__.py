"""Durable state: accepted messages, per-recipient queue entries, their outcomes."""
