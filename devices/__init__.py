"""The device side of GeoWarn: channel catalogue, payload decoders, registry, credentials,
health and commands."""
