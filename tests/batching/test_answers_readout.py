"""The toolbar's "2 answering · 3 waiting", read from a real engine through the head."""

from __future__ import annotations

import time

from layerlab.core.head.head import Head
from layerlab.core.load_plan import LoadPlan
from layerlab.ui.status.answers_readout import AnswersReadout, answers_text
from tests.batching.helpers import GREEDY, QUESTIONS, Stream, chat


def test_the_words():
    assert answers_text(0, 0) == ""
    assert answers_text(2, 3) == "2 answering · 3 waiting"
    assert answers_text(1, 0) == "1 answering"


def test_the_readout_counts_answers_running_and_waiting(qtbot, demo_model, tmp_path):
    head = Head(persist=False, state_dir=tmp_path, automatic=False, use_returning=False)
    try:
        head.load(LoadPlan(str(demo_model), n_ctx=512, n_threads=2, parallel=2))
        deadline = time.monotonic() + 90
        while head.supervisor.client() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        readout = AnswersReadout(head, poll_ms=50)
        qtbot.addWidget(readout)
        streams = [
            Stream(head.supervisor.client(), chat(q), {**GREEDY, "max_tokens": 400}).start()
            for q in QUESTIONS * 2
        ]
        qtbot.waitUntil(lambda: readout.running == 2 and readout.waiting >= 1, timeout=30000)
        assert readout.text().startswith("2 answering · ") and readout.text().endswith(" waiting")
        for s in streams:
            s.client.cancel()
        for s in streams:
            s.join()
        qtbot.waitUntil(lambda: readout.text() == "", timeout=30000)
    finally:
        head.close()
