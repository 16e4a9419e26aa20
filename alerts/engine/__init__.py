"""The warning engine: rule configuration, per-channel state and rings, the pure tick that
runs the methods, its database loading/saving, and the service around it."""
