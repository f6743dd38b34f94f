"""tracker: a real-time dispatch and tracking server for food delivery."""

__version__ = "0.1.0"
