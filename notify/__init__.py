"""Notifications: who hears about a warning, what they are told, and exactly-once delivery.

Layer: notify imports alerts, gis, devices and plumbing (geowarn/); nothing below imports it.
"""
