"""Test-only helpers shared by the test suite."""
