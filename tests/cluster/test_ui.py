"""The share switch and the pairing dialog, against a real sharing worker child."""

from __future__ import annotations

import pytest

from layerlab.core.cluster import link
from layerlab.ui.cluster.pairing_dialog import PairingDialog
from layerlab.ui.cluster.share_process import ShareProcess
from layerlab.ui.cluster.share_switch import ShareSwitch
from tests.cluster.conftest import share_switch_args
from tests.conftest import free_port_pair

pytestmark = pytest.mark.gui


def test_share_switch_shows_the_code_and_who_paired(qtbot, tmp_path, make_head):
    lan_port = free_port_pair()
    proc = ShareProcess(share_switch_args(tmp_path / "worker", lan_port))
    widget = ShareSwitch(proc)
    qtbot.addWidget(widget)
    widget.show()
    assert widget.status.text() == "Not shared." and not widget.code.isVisible()
    widget.switch.setChecked(True)
    try:
        qtbot.waitUntil(
            lambda: widget.code.isVisible() and len(widget.code.text()) == 7, timeout=30000
        )
        assert "bench-box" in widget.identity.text()
        first = widget.code.text()
        head, trust = make_head("desk")
        link.pair(head, trust, f"127.0.0.1:{lan_port}", first)
        qtbot.waitUntil(lambda: widget.status.text().startswith("Paired with desk"), timeout=5000)
        qtbot.waitUntil(lambda: widget.code.text() != first, timeout=5000)
    finally:
        with qtbot.waitSignal(proc.stopped, timeout=10000):
            widget.switch.setChecked(False)
    assert widget.status.text() == "Not shared." and not widget.code.isVisible()


def test_pairing_dialog_wrong_then_right_code(qtbot, start_sharing, make_head):
    w = start_sharing("bench-box")
    head, trust = make_head("desk")
    dialog = PairingDialog(
        head, trust, address=w.address, worker_name="bench-box", fingerprint=w.fingerprint
    )
    qtbot.addWidget(dialog)
    dialog.show()
    code = w.code
    wrong = "000-000" if code != "000-000" else "111-111"
    dialog.code.setText(wrong)
    dialog.pair_button.click()
    qtbot.waitUntil(lambda: "did not match" in dialog.message.text(), timeout=10000)
    assert dialog.peer is None and trust.workers() == []
    dialog.code.setText(w.code)
    with qtbot.waitSignal(dialog.paired, timeout=10000) as got:
        dialog.pair_button.click()
    assert got.args[0].fingerprint == w.fingerprint
    assert dialog.message.text().startswith("Paired with bench-box")
    dialog.code.setText("12")
    dialog.pair_button.click()
    assert dialog.message.text() == "A pairing code has 6 digits, like 482-913."
    # each try's job is let go on the GUI thread once its own thread has ended, never while
    # that thread may still touch it
    qtbot.waitUntil(lambda: not dialog._tries, timeout=5000)
    dialog.done(0)


def test_an_event_after_llama_cpp_text_on_the_same_line_is_still_read(qtbot, tmp_path):
    """llama.cpp's RPC thread writes to the worker's pipe too; a line of its that had no
    newline yet carried the 'sharing' event at its end, and the switch never showed its code."""
    fake = tmp_path / "worker.sh"
    fake.write_text(
        "#!/bin/sh\n"
        'printf \'Client connection closed{"event": "sharing", "name": "bench-box"}\\n\'\n'
        'printf \'{"event": "pairing_code", "code": "123-456"}\\n\'\n'
        "sleep 30\n"
    )
    fake.chmod(0o755)
    proc = ShareProcess([], program=str(fake))
    widget = ShareSwitch(proc)
    qtbot.addWidget(widget)
    widget.show()
    widget.switch.setChecked(True)
    try:
        qtbot.waitUntil(lambda: widget.code.isVisible(), timeout=10000)
        qtbot.waitUntil(lambda: widget.code.text() == "123-456", timeout=10000)
        assert "bench-box" in widget.identity.text()
    finally:
        with qtbot.waitSignal(proc.stopped, timeout=10000):
            widget.switch.setChecked(False)
