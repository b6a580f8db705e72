r"""Screenshots of "Let other apps use this model" (ui/api/api_panel.py) on a real head with
the demo model loaded, its API open on loopback, answering a real `openai` client:

- api-off.png: the switch off (nothing listens);
- api-on.png: on, with the URL and key to paste and the "works with" list;
- api-key-not-kept.png: on with a key for this run only, where none could be kept (a file
  stands where the config folder should be), and the panel saying so.

Run under Xvfb from the repository root:
    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python docs/screenshots/make_api_screens.py
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import openai
from PySide6.QtWidgets import QApplication

from layerlab.core.api_front import ApiKeyStore
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.supervisor import Failed, Ready
from layerlab.core.head import Head
from layerlab.core.load_plan import LoadPlan
from layerlab.ui.api.api_panel import ApiPanel

OUT = Path(__file__).parent


def pump_until(app: QApplication, cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("the panel did not settle")
        app.processEvents()
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    app = QApplication(sys.argv)
    tmp = Path(tempfile.mkdtemp(prefix="layerlab-api-shots-"))
    head = Head(persist=False, state_dir=tmp / "head")
    try:
        head.load(LoadPlan(str(demo_model_path()), n_ctx=1024, n_threads=2))
        pump_until(app, lambda: isinstance(head.state, Ready | Failed), 120)
        panel = ApiPanel(head)
        panel.resize(720, 560)
        panel.port.setValue(free_port())
        panel.show()
        pump_until(app, lambda: panel.isVisible())
        app.processEvents()
        panel.grab().save(str(OUT / "api-off.png"))

        panel.switch.click()
        pump_until(app, lambda: head.api.status.on and panel.switch.isEnabled())
        with openai.OpenAI(base_url=panel.url.text(), api_key=panel.key.text()) as client:
            model = client.models.list().data[0].id
            answer = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8
            )
        print("answered through the panel's URL:", repr(answer.choices[0].message.content))
        app.processEvents()
        panel.grab().save(str(OUT / "api-on.png"))

        panel.switch.click()
        pump_until(app, lambda: not head.api.status.on and panel.switch.isEnabled())
        blocked = tmp / "config"
        blocked.write_text("a file where the config folder should be")
        head.api.keys = ApiKeyStore(blocked, use_keyring=False)
        panel.switch.click()
        pump_until(app, lambda: head.api.status.on and panel.switch.isEnabled())
        app.processEvents()
        panel.grab().save(str(OUT / "api-key-not-kept.png"))
        panel.close()
    finally:
        head.close()


if __name__ == "__main__":
    main()
