"""Shared test helpers."""

import pytest


@pytest.fixture
def fake_load_or_explain():
    """A stand-in for ``experiments.common.load_or_explain``: returns ``stored`` when the command contains
    ``match``, else prints the not-computed line and returns None."""
    def make(match, stored):
        def load(get, scale, command):
            if match in command:
                return stored
            print(f"not computed yet: run `{command}`")
            return None
        return load
    return make
