"""The rider side: the ``/v1/ws/rider`` socket and its message handlers."""
