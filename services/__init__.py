"""The service set of a deployment: `geowarn run` and `geowarn health`."""
