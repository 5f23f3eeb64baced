"""Offline evaluation: metrics on the ink (``metrics``) and seeded evaluation runs (``runs``)."""
