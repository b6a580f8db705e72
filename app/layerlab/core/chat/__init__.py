"""Conversations and the live numbers of an answer being written."""
