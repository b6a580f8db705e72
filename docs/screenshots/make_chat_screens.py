"""Screenshots of the chat: a conversation with code, a table and stats; the sidebar; the
branch switcher "< 2/3 >"; the context-overflow choice (a longer context that fits, and one
that does not); the no-template notice; a fresh pane before its first message (the default
preset it will be saved with, and the details behind it).

  xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python docs/screenshots/make_chat_screens.py

The conversations are written into a throwaway store as the service would keep them (no
engine needed for what is shown); the widgets are the app's own.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QRect
from PySide6.QtWidgets import QApplication, QHBoxLayout, QWidget

from layerlab.core.chat.longer_context import LongerContext
from layerlab.core.chat.service import ContextFull, ContextMeter
from layerlab.core.chat.store import AnswerStats
from layerlab.core.head import Head
from layerlab.core.load_plan import default_plan
from layerlab.ui.chat.chat_pane import ChatPane
from layerlab.ui.chat.sidebar import ConversationSidebar

HERE = Path(__file__).resolve().parent

ANSWER = """Here is a small function that sorts a list of people by age:

```python
def by_age(people: list[dict]) -> list[dict]:
    # oldest first; ties keep their order
    return sorted(people, key=lambda p: p["age"], reverse=True)
```

| name  | age |
|-------|-----|
| Ada   | 36  |
| Linus | 28  |

See [the sorting HOWTO](https://docs.python.org/3/howto/sorting.html) for more.
"""

STATS = AnswerStats(0.21, 412.0, 78.4, 31, 96, "stop", "CPU: layers 0-29 + output")


def fill(head: Head) -> str:
    store = head.chat.store
    for title in (
        "Packing list for a hike",
        "Why is the sky blue?",
        "A haiku about rain",
        "Explain RAID levels like I am five",
        "Translate a letter to French",
        "Plan a week of dinners",
    ):
        c = store.create_conversation()
        q = store.add_message(c.id, None, "user", title)
        store.add_message(c.id, q.id, "assistant", "…", finish="stop")
    c = store.create_conversation()
    q = store.add_message(c.id, None, "user", "How do I sort people by age in Python?")
    # regenerated twice: three answers at one place; the middle one shown, "< 2/3 >"
    first = store.add_message(c.id, q.id, "assistant", "Use `sorted` with a key.")
    store.finish_answer(first.id, "stop", AnswerStats(0.2, 400.0, 80.1, 31, 9, "stop", "CPU"))
    a = store.add_message(c.id, q.id, "assistant", ANSWER)
    store.finish_answer(a.id, "stop", STATS)
    third = store.add_message(c.id, q.id, "assistant", "`people.sort(key=...)` sorts in place.")
    store.finish_answer(third.id, "stop", AnswerStats(0.2, 401.0, 79.5, 31, 12, "stop", "CPU"))
    store.switch_branch(third.id, -1)
    return c.id


def settle(app: QApplication, pane: ChatPane) -> None:
    """Let the worker format what is shown, and the layout take it."""
    end = time.monotonic() + 10
    while (pane.transcript.pending_renders or time.monotonic() < end - 9.7) and (
        time.monotonic() < end
    ):
        app.processEvents()
        time.sleep(0.01)
    app.processEvents()


def main() -> int:
    app = QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as d:
        head = Head(persist=False, state_dir=Path(d))
        cid = fill(head)
        window = QWidget()
        window.resize(1280, 800)
        row = QHBoxLayout(window)
        side = ConversationSidebar(head)
        side.setFixedWidth(260)
        pane = ChatPane(head)
        row.addWidget(side)
        row.addWidget(pane, 1)
        pane.attach_sidebar(side)
        pane.open_conversation(cid)
        side.select(cid)
        window.show()
        # what the meter says with the demo model loaded (no engine runs for the screenshots)
        pane._show_meter(ContextMeter(187, 2048))
        settle(app, pane)
        window.grab().save(str(HERE / "chat-conversation.png"))
        side.grab(QRect(0, 0, side.width(), 330)).save(str(HERE / "chat-sidebar.png"))
        # the answer with its "< 2/3 >" switcher, as a person sees it in the conversation
        t = pane.transcript
        t.grab(QRect(0, 0, t.width(), min(t.height(), 420))).save(
            str(HERE / "chat-branch-switcher.png")
        )

        pane.input.setPlainText("Now do the same for a list of a million people, with dates.")
        pane._show_meter(ContextMeter(2135, 2048))  # the draft counted: over the context
        pane._offer_overflow(ContextFull(2391, 2048))
        plan = default_plan("SmolLM2-135M-Instruct-Q4_1.gguf", None, 4096, "demo")
        pane._show_longer(LongerContext(4096, plan, ""))  # what the planner said here
        settle(app, pane)
        pane._show_meter(ContextMeter(2135, 2048))
        window.grab().save(str(HERE / "chat-overflow-choice.png"))
        pane._show_longer(
            LongerContext(
                4096,
                None,
                "A longer context (4,096 tokens) does not fit this cluster: its devices do not "
                "have the memory for that much context. Start a new chat or drop the oldest "
                "turns instead.",
            )
        )
        settle(app, pane)
        pane._show_meter(ContextMeter(2135, 2048))
        window.grab().save(str(HERE / "chat-overflow-no-room.png"))

        pane.new_conversation()
        pane._show_meter(ContextMeter(0, 2048))
        pane.input.setPlainText("Once upon a time, in a valley of tall pines,")
        pane._offer_templates("Mistral-7B-v0.1.Q4_K_M.gguf")  # a base model: no template
        settle(app, pane)
        pane._show_meter(ContextMeter(0, 2048))
        window.grab().save(str(HERE / "chat-no-template.png"))
        pane.shutdown()
        window.close()

        # before any conversation: what the first message will be saved with
        first = QWidget()
        first.resize(1280, 800)
        row = QHBoxLayout(first)
        fresh = ChatPane(head)
        row.addWidget(fresh, 1)
        first.show()
        fresh.sampling.details_button.setChecked(True)
        fresh.input.setPlainText("Hello! What can you do?")
        settle(app, fresh)
        first.grab().save(str(HERE / "chat-before-first-message.png"))
        fresh.shutdown()
        first.close()
        head.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
