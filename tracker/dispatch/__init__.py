"""Dispatch: the sans-I/O planner shared by the live loop and the MDRP replay, and the loop."""
