"""Screenshots of the chat: a conversation with code, a table and stats; the sidebar; the
branch switcher; the context-overflow choice; the no-template notice.

  xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python docs/screenshots/make_chat_screens.py

The conversations are written into a throwaway store as the service would keep them (no
engine needed for what is shown); the widgets are the app's own.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtWidgets import QApplication, QHBoxLayout, QWidget

from layerlab.core.chat.service import ContextFull, NoChatTemplate
from layerlab.core.chat.store import AnswerStats
from layerlab.core.head import Head
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
    for title in ("Packing list for a hike", "Why is the sky blue?", "A haiku about rain"):
        c = store.create_conversation()
        q = store.add_message(c.id, None, "user", title)
        store.add_message(c.id, q.id, "assistant", "…")
    c = store.create_conversation()
    q = store.add_message(c.id, None, "user", "How do I sort people by age in Python?")
    first = store.add_message(c.id, q.id, "assistant", "Use `sorted` with a key.")
    store.finish_answer(first.id, "stop", AnswerStats(0.2, 400.0, 80.1, 31, 9, "stop", "CPU"))
    a = store.add_message(c.id, q.id, "assistant", ANSWER)  # regenerated: "< 2/2 >"
    store.finish_answer(a.id, "stop", STATS)
    return c.id


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
        app.processEvents()
        window.grab().save(str(HERE / "chat-conversation.png"))
        side.grab().save(str(HERE / "chat-sidebar.png"))
        pane.transcript.grab().save(str(HERE / "chat-branch-switcher.png"))
        pane._offer_overflow(ContextFull(2391, 2048))
        app.processEvents()
        window.grab().save(str(HERE / "chat-overflow-choice.png"))
        pane._offer_templates(str(NoChatTemplate()))
        app.processEvents()
        window.grab().save(str(HERE / "chat-no-template.png"))
        pane.shutdown()
        window.close()
        head.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
