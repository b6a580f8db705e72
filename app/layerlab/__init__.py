"""LayerLab: run large language models across every GPU in a home lab."""

__version__ = "0.1.0"
