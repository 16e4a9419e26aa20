"""The warning engine: pure numpy/scipy methods and the alert lifecycle around them."""
