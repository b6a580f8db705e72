"""One switch for every huggingface_hub use in core: no call home.

Building any request's headers in huggingface_hub 2.4 otherwise fetches an 'agent harnesses'
list from huggingface.co (even when a mirror is the endpoint), a call the person never asked
for. Its documented switch is HF_HUB_DISABLE_TELEMETRY, read at import. This sits at the
bottom of core (no imports of ours) so the GGUF header reader (core/gguf/sources.py) and the
hub (core/hub, and its transfer process, which must start fast) can both call it.
"""

from __future__ import annotations

import os


def no_telemetry() -> None:
    """Set both the variable (for child processes) and the constant (for this one)."""
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    import huggingface_hub.constants as constants

    constants.HF_HUB_DISABLE_TELEMETRY = True
