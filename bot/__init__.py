"""The chat side: platform adapters, the gateway, the command grammar and the outbox."""
