"""The bridge's exceptions. `retriable` tells the run loop whether to start over (after a backoff) or stop."""


class BridgeError(Exception):
    """The bridge cannot go on as it is."""

    retriable = True
