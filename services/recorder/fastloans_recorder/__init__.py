"""Recorder: stores each decision once, keyed by application and revision, and updates the application."""
