"""The bridge's exceptions. `retriable` tells the run loop whether to start over (after a backoff) or stop."""


class BridgeError(Exception):
    """The bridge cannot go on as it is."""

    retriable = True

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class KafkaStalled(BridgeError):
    """A Kafka transaction did not complete within BRIDGE_TRANSACTION_TIMEOUT."""
