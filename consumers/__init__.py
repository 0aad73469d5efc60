"""Example consumers of the status-change topic."""
