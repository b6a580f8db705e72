"""Helpers several test packages share (real processes, no mocks of our own code)."""
