"""The HTTP API: balances, the status-change counter, operations intake and the dashboard."""
