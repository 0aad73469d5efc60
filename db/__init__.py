"""The system of record: SQL schema and triggers (migrations), the migration runner, and the load script."""
