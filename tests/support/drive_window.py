"""The real LayerLab window (`layerlab`, through layerlab.cli.main as the command runs it),
asked one question through its chat pane once the model is loaded, as a person would: the
text typed, Send clicked. Each piece of the answer is printed to stdout as the pane receives
it, so a test can kill this process with signal 9 and compare what the store kept.

  python -m tests.support.drive_window "question" MAX_TOKENS
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication


def _piece(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def main() -> int:
    question, max_tokens = sys.argv[1], int(sys.argv[2])
    app = QApplication(sys.argv[:1])  # run_app takes the existing one
    asked = False

    def try_to_ask() -> None:
        nonlocal asked
        for w in app.topLevelWidgets():
            pane = getattr(w, "chat", None)
            if asked or pane is None or not pane.send_button.isEnabled():
                continue
            asked = True
            pane.answerStarted.connect(lambda turn: turn.piece.connect(_piece))
            pane.params = {"max_tokens": max_tokens, "temperature": 0.0}
            pane.input.setPlainText(question)
            pane.send_button.click()
            print("[asked]", file=sys.stderr, flush=True)

    poll = QTimer()
    poll.setInterval(200)
    poll.timeout.connect(try_to_ask)
    poll.start()
    from layerlab.cli.main import main as layerlab

    return layerlab([])


if __name__ == "__main__":
    sys.exit(main())
