"""The alert lifecycle: what level changes do to alerts (writes), what people see (queries),
and the notification outbox filled in the same transaction."""
