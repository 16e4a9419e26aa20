"""The MQTT ingest gateway: device messages in, readings committed exactly once."""
