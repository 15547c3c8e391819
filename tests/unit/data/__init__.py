"""Tranches: names, reading, validation and drift."""
