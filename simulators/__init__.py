"""Simulated and recorded device streams, published over real MQTT."""
