"""Memory is an integer number of bytes everywhere in core; these helpers only format it."""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def format_ms(ms: float) -> str:
    """A short time as a person reads it; loopback round trips are below what 0.1 shows."""
    return "<0.1 ms" if ms < 0.1 else f"{ms:.1f} ms"


def format_bytes(n: int) -> str:
    """Human-readable size: '512 MiB', '11.8 GiB'."""
    if n < 0:
        return "-" + format_bytes(-n)
    if n >= GiB:
        return f"{n / GiB:.1f} GiB"
    if n >= MiB:
        return f"{n / MiB:.0f} MiB"
    if n >= KiB:
        return f"{n / KiB:.0f} KiB"
    return f"{n} B"
