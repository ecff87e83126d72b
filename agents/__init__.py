"""Agents: the core (registry, coordinator, executor, ports) and the features plugged
into it (one module each: ops, notes, router; see ``agents/feature.py``).

The core knows no platform: nothing here imports ``bot``.
"""
