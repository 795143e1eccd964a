"""Typing tests: files mypy checks (``check_*.py``, never run) and the test that runs mypy."""
