"""Adverse-action notices: the content of a notice (`content`), its PDF (`pdf`), and the stored record (`service`)."""
