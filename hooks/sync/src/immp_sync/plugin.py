"""Registers nothing yet."""
