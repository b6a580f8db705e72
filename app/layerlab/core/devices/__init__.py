"""Every device in the house: local GPUs (NVML, sysfs), the host, and workers' devices."""
