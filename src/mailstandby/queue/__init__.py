"""Delivery: the queue runner, retries with backoff, and delivery status notifications."""
