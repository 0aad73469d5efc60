"""The bridge: moves status changes from the PostgreSQL outbox to the Kafka topic, exactly once."""
