"""Hazard points, shelters, households and spatial matching (shapely 2)."""
