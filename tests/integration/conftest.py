"""The integration tier: tests that start the real embedded tritonserver (``start_server`` is
in tests/conftest.py, shared with the reliability tier)."""
