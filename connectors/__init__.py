"""Connectors: adapters to the outside world (webhooks, email, LLMs...).

Each connector is versioned, takes an idempotency key, and maps its vendor's errors
to transient or permanent (``connectors.base``). ``connectors.webhook`` POSTs signed
JSON to named hooks.
"""
