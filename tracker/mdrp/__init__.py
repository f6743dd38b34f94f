"""Grubhub's Meal Delivery Routing Problem instances: loading, replay, checking, reporting."""
