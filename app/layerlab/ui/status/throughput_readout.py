"""Prompt tok/s · generation tok/s · time to first token, live while an answer streams."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from layerlab.core.chat.throughput import Rates


def _fmt(v: float | None, unit: str, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f} {unit}"


class ThroughputReadout(QLabel):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rates = Rates()
        self.show_rates(Rates())

    def show_rates(self, rates: Rates) -> None:
        self.rates = rates
        ttft = None if rates.ttft_s is None else rates.ttft_s * 1000
        self.setText(
            f"prompt {_fmt(rates.prompt_tps, 'tok/s')} · generation "
            f"{_fmt(rates.generation_tps, 'tok/s')} · first token {_fmt(ttft, 'ms', 0)}"
        )
        self.setToolTip(
            "Final numbers from llama.cpp's own timings"
            if rates.final
            else "Live estimate from the tokens as they arrive"
        )
