"""Delivery channels, each behind the small interface of notify/channels/base.py."""
