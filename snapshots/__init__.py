"""Checkpoint files: format, atomic write, checksum, retention (see issue 4)."""
