"""Persistent stores: key storage (``keys``) and execution history (``history``)."""
