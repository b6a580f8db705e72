"""Cluster widgets: share this machine, pair with a worker."""
