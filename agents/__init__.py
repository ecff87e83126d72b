"""Agents: the coordinator, its records (Intent, Reply) and the typed agents.

The core knows no platform: nothing here imports ``bot``.
"""
