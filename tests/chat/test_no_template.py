"""A model whose GGUF carries no chat template (a base model): named as such, and the
person's pick (a template, or plain completion) is what the engine is given."""

from __future__ import annotations

import pytest

from layerlab.core.chat.service import ChatService, NoChatTemplate
from layerlab.core.chat.templates import TEMPLATES, gguf_chat_template
from layerlab.core.engine.client import EngineRefused
from layerlab.core.engine.supervisor import Failed, Ready
from layerlab.core.head import Head
from layerlab.core.load_plan import default_plan
from layerlab.ui.chat.chat_pane import ChatPane
from tests.chat.conftest import SETTINGS
from tests.support.synthetic_gguf import ModelSpec, write_model


@pytest.fixture(scope="module")
def base_file(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("base") / "base.gguf", ModelSpec(name="base"))


@pytest.fixture
def base_model(base_file, tmp_path):
    """A fresh engine per test (a small model loads in a moment): no prompt cached from
    another test, so its prompt count is the whole prompt's."""
    path, folder = base_file, tmp_path
    head = Head(persist=False, state_dir=folder / "head")
    head.load(default_plan(str(path), None, 512, "base"))
    state = head.supervisor.wait_for((Ready, Failed), 90)
    assert isinstance(state, Ready), getattr(state, "message", state)
    yield path, head
    head.close()


def test_the_file_says_it_has_no_template(base_model, demo_model):
    path, _ = base_model
    assert gguf_chat_template(path) == ""
    assert "<|im_start|>" in gguf_chat_template(demo_model)


@pytest.mark.parametrize("key", ["chatml", "plain"])
def test_the_notice_and_then_the_chosen_template_is_used(base_model, tmp_path, key):
    _, head = base_model
    chat = ChatService(head.client, tmp_path / "c.sqlite3", engine_state=lambda: head.state)
    try:
        c = chat.new_conversation(settings=SETTINGS)
        assert chat.needs_template(c.id)
        with pytest.raises(NoChatTemplate, match="no chat template"):
            chat.send(c.id, "Hello")
        assert chat.messages(c.id) == []  # nothing half-sent
        assert head.client().tokenize(text="x")["chat_template"] is False
        with pytest.raises(EngineRefused, match="no chat template"):
            head.client().tokenize(messages=[{"role": "user", "content": "Hello"}])

        chat.choose_template(c.id, key)
        assert not chat.needs_template(c.id)
        answer = chat.send(c.id, "Hello")
        assert answer.finish in ("stop", "length")
        # what the engine read is exactly the chosen template's prompt: it counted as many
        # prompt tokens as that text has
        prompt = TEMPLATES[key].render([{"role": "user", "content": "Hello"}])
        counted = head.client().tokenize(text=prompt)["tokens"]
        assert answer.stats.prompt_tokens == counted
        assert chat.context(c.id, "more").used > counted
    finally:
        chat.close()


def test_an_unknown_template_is_refused_in_words(base_model, tmp_path):
    _, head = base_model
    chat = ChatService(head.client, tmp_path / "c.sqlite3")
    try:
        c = chat.new_conversation()
        with pytest.raises(ValueError, match="no template 'jinja'; choose one of chatml"):
            chat.choose_template(c.id, "jinja")
    finally:
        chat.close()


@pytest.mark.gui
def test_the_pane_names_the_model_and_answers_with_the_chosen_template(qtbot, base_model):
    _, head = base_model
    pane = ChatPane(head)
    qtbot.addWidget(pane)
    pane.show()
    try:
        pane.set_client(head.client())
        pane.open_conversation(head.chat.new_conversation(settings=SETTINGS).id)
        pane.input.setPlainText("Hello")
        pane.send()
        qtbot.waitUntil(lambda: pane.choice.isVisible() and not pane.busy, timeout=30_000)
        # the model as it was loaded ("base"), never "this model"
        assert pane.choice.text.text().startswith("base has no chat template (it is a base model)")
        assert pane.input.toPlainText() == "Hello"  # what was typed is kept for the retry
        pane.template_list.setCurrentIndex(pane.template_list.findData("chatml"))
        pane.template_use.click()
        qtbot.waitUntil(
            lambda: not pane.busy and len(pane.conversation.messages) == 2, timeout=60_000
        )
        assert pane.service.settings(pane.conversation_id).template == "chatml"
        assert pane.conversation.messages[1].finish in ("stop", "length")
    finally:
        pane.shutdown()


def test_a_model_loaded_without_a_name_is_named_by_its_file(base_file, tmp_path, qtbot):
    head = Head(persist=False, state_dir=tmp_path / "head")
    try:
        head.load(default_plan(str(base_file), None, 512))
        assert isinstance(head.supervisor.wait_for((Ready, Failed), 90), Ready)
        pane = ChatPane(head)
        qtbot.addWidget(pane)
        pane._offer_templates()
        assert pane.choice.text.text().startswith("base.gguf has no chat template")
        pane.shutdown()
    finally:
        head.close()
