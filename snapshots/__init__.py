"""Checkpoint files: the format, atomic writes, checksums, retention (see DESIGN.md)."""
