"""Test support: the router started as a real server on loopback, and helpers to write tables."""
