"""The chat pane: a view of the head's chat service. The conversation (Markdown, stats and
actions per message, the branch switcher), the input with Send and Stop, the conversation's
system prompt and sampling preset, the context meter, and the choices a turn may need (the
context would overflow; the model has no chat template). Everything is kept in the store as
it streams; tokens are painted at a human rate, not one repaint per token."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.chat.longer_context import LongerContext, longer_context
from layerlab.core.chat.service import (
    ChatService,
    ContextFull,
    ContextMeter,
    NoChatTemplate,
)
from layerlab.core.chat.store import PRESETS, ConversationSettings, Message, Sampling, Store
from layerlab.core.chat.templates import TEMPLATES
from layerlab.core.chat.throughput import AnswerClock, Rates
from layerlab.core.engine.client import EngineClient
from layerlab.core.planner.inputs import this_machine_devices
from layerlab.ui.chat.message_input import MessageInput
from layerlab.ui.chat.transcript import SHOW_MORE, SHOWN_AT_FIRST, TranscriptView
from layerlab.ui.chat.turn import ServiceTurn, TurnThread

PAINT_INTERVAL_MS = 33  # ~30 repaints a second, however fast tokens arrive
INPUT_LINES_PX = 72  # the input keeps about three lines when a choice needs the room
TYPING_PAUSE_MS = 400  # the meter counts the draft once typing pauses this long


def no_template_words(model: str) -> str:
    """The notice for a model whose GGUF has no chat template, naming it."""
    return (
        f"{model or 'This model'} has no chat template (it is a base model). Pick a template "
        "for it, or plain completion, so its answers are formatted as it expects."
    )


@dataclass
class ShownMessage:
    """A message as the pane shows it now (the answer being written grows here)."""

    id: str
    role: str
    content: str
    finish: str


class ShownConversation:
    def __init__(self) -> None:
        self.messages: list[ShownMessage] = []


class SamplingBox(QWidget):
    """System prompt, preset and the details behind it, for the open conversation."""

    changed = Signal(object)  # ConversationSettings

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.system_prompt = QLineEdit()
        self.system_prompt.setPlaceholderText("System prompt (optional)")
        self.preset = QComboBox()
        self.preset.addItems([*PRESETS, "Custom"])
        self.details_button = QPushButton("Details")
        self.details_button.setCheckable(True)
        self.details = QWidget()
        form = QFormLayout(self.details)
        form.setContentsMargins(0, 0, 0, 0)
        self.temperature = self._double(0, 2, 0.05)
        self.top_p = self._double(0.01, 1, 0.01)
        self.top_k = self._int(0, 1000)
        self.min_p = self._double(0, 1, 0.01)
        self.repeat_penalty = self._double(0.5, 2, 0.05)
        self.max_tokens = self._int(1, 32768)
        self.seed = self._int(-1, 2**31 - 1)
        self.seed.setSpecialValueText("random")
        for label, w in [
            ("Temperature", self.temperature),
            ("Top-p", self.top_p),
            ("Top-k", self.top_k),
            ("Min-p", self.min_p),
            ("Repeat penalty", self.repeat_penalty),
            ("Max tokens", self.max_tokens),
            ("Seed", self.seed),
        ]:
            form.addRow(label, w)
        self.details.hide()
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.system_prompt, 1)
        top.addWidget(self.preset)
        top.addWidget(self.details_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.details)
        self._loading = False
        self.details_button.toggled.connect(self.details.setVisible)
        self.preset.currentTextChanged.connect(self._preset_chosen)
        self.system_prompt.editingFinished.connect(self._emit)
        for w in (self.temperature, self.top_p, self.min_p, self.repeat_penalty):
            w.valueChanged.connect(self._detail_changed)
        for w in (self.top_k, self.max_tokens, self.seed):
            w.valueChanged.connect(self._detail_changed)
        self._template = ""
        self._drop_oldest = False
        # what a first conversation will be saved with, shown before there is one (the combo
        # box alone would show its first entry over empty details)
        self.show_settings(ConversationSettings())

    def _double(self, lo: float, hi: float, step: float) -> QDoubleSpinBox:
        w = QDoubleSpinBox()
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.setDecimals(2)
        return w

    def _int(self, lo: int, hi: int) -> QSpinBox:
        w = QSpinBox()
        w.setRange(lo, hi)
        return w

    def show_settings(self, s: ConversationSettings) -> None:
        self._loading = True
        self._template, self._drop_oldest = s.template, s.drop_oldest
        self.system_prompt.setText(s.system_prompt)
        self._show_sampling(s.sampling)
        self.preset.setCurrentText(s.sampling.preset if s.sampling.preset in PRESETS else "Custom")
        self._loading = False

    def _show_sampling(self, x: Sampling) -> None:
        self.temperature.setValue(x.temperature)
        self.top_p.setValue(x.top_p)
        self.top_k.setValue(x.top_k)
        self.min_p.setValue(x.min_p)
        self.repeat_penalty.setValue(x.repeat_penalty)
        self.max_tokens.setValue(x.max_tokens)
        self.seed.setValue(-1 if x.seed is None else x.seed)

    def settings(self) -> ConversationSettings:
        seed = self.seed.value()
        sampling = Sampling(
            self.preset.currentText(),
            self.temperature.value(),
            self.top_p.value(),
            self.top_k.value(),
            self.min_p.value(),
            self.repeat_penalty.value(),
            self.max_tokens.value(),
            None if seed < 0 else seed,
        )
        return ConversationSettings(
            self.system_prompt.text(), sampling, self._template, self._drop_oldest
        )

    def _preset_chosen(self, name: str) -> None:
        if self._loading or name not in PRESETS:
            return
        self._loading = True
        self._show_sampling(PRESETS[name])
        self._loading = False
        self._emit()

    def _detail_changed(self) -> None:
        if self._loading:
            return
        self._loading = True
        self.preset.setCurrentText("Custom")
        self._loading = False
        self._emit()

    def _emit(self) -> None:
        if not self._loading:
            self.changed.emit(self.settings())


class ChoiceBar(QWidget):
    """A question a turn needs answered, with its buttons (overflow; no chat template)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setStyleSheet("ChoiceBar { background: #fff8c5; }")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.detail = QLabel()  # a second line: what the planner said, ...
        self.detail.setWordWrap(True)
        self.detail.hide()
        self.row = QHBoxLayout()
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(self.detail)
        layout.addLayout(self.row)
        self.hide()


class ChatPane(QWidget):
    ratesChanged = Signal(object)  # Rates
    busyChanged = Signal(bool)
    answerStarted = Signal(object)  # the ServiceTurn, for views that follow an answer
    conversationsChanged = Signal()  # a title or the order may have changed (the sidebar)
    _meter_ready = Signal(object)  # ContextMeter, from the thread that asked the engine
    _longer_ready = Signal(object)  # LongerContext, from the thread that asked the planner

    def __init__(self, head=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.head = head
        self._client: EngineClient | None = None
        if head is not None:
            self.service: ChatService = head.chat
        else:  # a pane on its own (no head): a conversation kept in memory only
            self.service = ChatService(lambda: self._client, store=Store(":memory:"))
        self.conversation = ShownConversation()
        self.conversation_id: str | None = None
        self._turn: ServiceTurn | None = None
        self._live: ShownMessage | None = None
        self._live_message: Message | None = None
        self._clock: AnswerClock | None = None
        self._pending: list[str] = []
        self._editing: str | None = None
        self._retry = None  # the turn to run again once a choice is made
        self._shown_n = SHOWN_AT_FIRST  # the newest messages shown; "Show earlier" adds
        self._more_above = False
        self.params: dict = {}  # overrides for the conversation's sampling (tests, scripts)

        self.transcript = TranscriptView()
        self.input = MessageInput()
        self.send_button = QPushButton("Send")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.send_button.setEnabled(False)
        self.send_button.setToolTip("Ctrl+Enter")
        self.editing_label = QLabel()
        self.editing_label.hide()
        self.meter = QProgressBar()
        self.meter.setTextVisible(True)
        self.meter.setRange(0, 1)  # a bar with no value hides its text: "context: –" shows
        self.meter.setValue(0)
        self.meter.setFormat("context: –")
        self.meter.setMaximumWidth(260)
        self.sampling = SamplingBox()
        self.choice = ChoiceBar()
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #a33;")
        self.problem.hide()

        buttons = QHBoxLayout()
        buttons.addWidget(self.meter)
        buttons.addWidget(self.editing_label, 1)
        buttons.addStretch(0)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.send_button)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.choice)
        bl.addWidget(self.problem)
        bl.addWidget(self.input)
        bl.addLayout(buttons)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.transcript)
        split.addWidget(bottom)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setCollapsible(1, False)
        self._split, self._bottom = split, bottom
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.sampling)
        layout.addWidget(split, 1)

        self._paint = QTimer(self)
        self._paint.setInterval(PAINT_INTERVAL_MS)
        self._paint.timeout.connect(self._flush)

        self.send_button.clicked.connect(self.send)
        self.input.sendRequested.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.transcript.actionRequested.connect(self._act)
        self.transcript.earlierRequested.connect(self.show_earlier)
        self.sampling.changed.connect(self._settings_changed)
        self._meter_ready.connect(self._show_meter)
        self._meter_asked = 0  # readings are numbered: only the newest is shown
        self._overflow_shown = False  # the overflow choice is up because of the draft
        self._typing = QTimer(self)
        self._typing.setSingleShot(True)
        self._typing.setInterval(TYPING_PAUSE_MS)
        self._typing.timeout.connect(self._count_draft)
        self.input.textChanged.connect(self._typed)
        self._longer_ready.connect(self._show_longer)
        self._asking_planner = 0  # numbers the overflow choices: an answer finds its own
        # where a longer context is planned (tests and the window may hand in their own)
        self.plan_devices = self._cluster_devices
        self.longer: LongerContext | None = None
        self.problem.linkActivated.connect(self._problem_link)
        self._closed = False
        # Turns and context readings take turns on one thread the pane starts now (a turn's
        # start never waits for a thread to start; a reading after an answer never runs
        # beside the next turn, both reading the whole conversation); the planner's question
        # has its own. Joined at shutdown: never a thread outliving the pane.
        self._turn_thread = TurnThread()
        self._planner_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-planner")
        self.meter_value: ContextMeter | None = None
        if self.service.store.message:
            self._say(self.service.store.message)

    # -- engine availability ------
    def set_client(self, client: EngineClient | None) -> None:
        self._client = client
        self.send_button.setEnabled(client is not None and self._turn is None)
        if client is not None and self.conversation_id:
            self.refresh_meter()

    @property
    def busy(self) -> bool:
        return self._turn is not None

    # -- conversations ------
    def new_conversation(self) -> str:
        # what the box shows: the open conversation's settings, or what the person chose
        # before the first message (a preset picked then used to be dropped for the default)
        settings = replace(self.sampling.settings(), template="", drop_oldest=False)
        cid = self.service.new_conversation(settings=settings).id
        self.open_conversation(cid)
        self.conversationsChanged.emit()
        return cid

    def attach_sidebar(self, sidebar) -> None:
        """Wire a ConversationSidebar to this pane: choosing opens, New starts one, and the
        list follows titles and order as answers come. Opens the newest conversation."""
        sidebar.newRequested.connect(self.new_conversation)
        sidebar.conversationChosen.connect(self.open_conversation)
        self.conversationsChanged.connect(lambda: sidebar.refresh(select=self.conversation_id))
        newest = self.service.conversations()
        if newest and self.conversation_id is None:
            self.open_conversation(newest[0].id)
            sidebar.select(newest[0].id)

    def open_conversation(self, cid: str) -> None:
        if self._turn is not None:
            return  # the answer being written keeps its conversation on screen
        self.conversation_id = cid
        self._shown_n = SHOWN_AT_FIRST
        self._editing = None
        self.editing_label.hide()
        self.choice.hide()
        self._overflow_shown = False
        self.problem.hide()
        self.sampling.show_settings(self.service.settings(cid))
        self._show_stored()
        self.refresh_meter()

    def _show_stored(self) -> None:
        self.transcript.show_messages(self._show_stored_rows(), self._more_above)

    def _show_stored_rows(self) -> list[tuple[Message, tuple[int, int]]]:
        """The conversation's newest messages as stored, with their branch places (read
        without the rest, however long it is); the pane's copy follows them."""
        cid = self.conversation_id
        rows, complete = self.service.newest_messages(cid, self._shown_n) if cid else ([], True)
        self._more_above = not complete
        self.conversation.messages = [
            ShownMessage(m.id, m.role, m.content, m.finish) for m, _ in rows
        ]
        return rows

    def show_earlier(self) -> None:
        """ "Show earlier messages": the view grows upwards."""
        if self._turn is not None:
            return
        self._shown_n += SHOW_MORE
        self._show_stored()  # the transcript puts them in above, a few per turn

    def _settings_changed(self, settings: ConversationSettings) -> None:
        if self.conversation_id is not None:
            self.service.set_settings(self.conversation_id, settings)

    # -- a turn ------
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self._client is None or self._turn is not None:
            return
        if self.conversation_id is None:
            self.new_conversation()
        cid = self.conversation_id
        self._apply_params(cid)
        self.input.clear()
        editing, self._editing = self._editing, None
        self.editing_label.hide()
        # shown at once; the store's own copies replace them when the answer starts
        self.conversation.messages += [
            ShownMessage("", "user", text, "stop"),
            ShownMessage("", "assistant", "", ""),
        ]
        if editing:
            self._start(lambda emit: self.service.edit(editing, text, emit), text)
        else:
            self._start(lambda emit: self.service.send(cid, text, emit), text)

    def _apply_params(self, cid: str) -> None:
        if not self.params:
            return
        s = self.service.settings(cid)
        known = {k: v for k, v in self.params.items() if hasattr(s.sampling, k)}
        self.service.set_settings(cid, replace(s, sampling=replace(s.sampling, **known)))
        self.sampling.show_settings(self.service.settings(cid))

    def regenerate(self, mid: str) -> None:
        self._start(lambda emit: self.service.regenerate(mid, emit))

    def continue_answer(self, mid: str) -> None:
        self._start(lambda emit: self.service.continue_answer(mid, emit))

    def edit(self, mid: str) -> None:
        """Put the message in the input; Send makes a new branch beside it."""
        self._editing = mid
        self.input.setPlainText(self.service.store.message_by_id(mid).content)
        self.editing_label.setText("Editing a message: Send makes a new branch")
        self.editing_label.show()
        self.input.setFocus()

    def delete(self, mid: str) -> None:
        self.service.delete_message(mid)
        self._deleted = mid
        self._show_stored()
        self._say("Message deleted.", undo=True)

    def undo_delete(self) -> None:
        mid = getattr(self, "_deleted", None)
        if mid:
            self.service.undo_delete_message(mid)
            self._deleted = None
            self.problem.hide()
            self._show_stored()

    def switch(self, mid: str, step: int) -> None:
        self.service.switch_branch(mid, step)
        self._show_stored()

    def _act(self, what: str, mid: str) -> None:
        if self._turn is not None:
            return
        actions = {
            "regenerate": self.regenerate,
            "continue": self.continue_answer,
            "edit": self.edit,
            "delete": self.delete,
            "prev": lambda m: self.switch(m, -1),
            "next": lambda m: self.switch(m, +1),
        }
        if what in actions:
            actions[what](mid)

    def _start(self, call, question: str | None = None) -> None:
        if self._client is None or self._turn is not None:
            return
        self._typing.stop()
        self._overflow_shown = False
        self.choice.hide()
        self.problem.hide()
        self._retry = (call, question)
        self._clock = AnswerClock()
        self._turn = ServiceTurn(self.service, call, self._turn_thread, self)
        self._turn.started.connect(self._on_started)
        self._turn.piece.connect(self._on_piece)
        self._turn.ended.connect(self._on_ended)
        self._turn.failed.connect(self._on_failed)
        self._set_busy(True)
        self.answerStarted.emit(self._turn)
        self._turn.start()

    def stop(self) -> None:
        if self._turn is not None:
            self._turn.cancel()

    def shutdown(self, timeout: float = 3.0) -> None:
        """At close: stop the answer in progress and let its thread end."""
        self._closed = True
        self._planner_pool.shutdown(wait=True, cancel_futures=True)
        self.transcript.shutdown()
        turn = self._turn
        ended = True
        if turn is not None:
            turn.cancel()
            ended = turn.wait(timeout)
        self._turn_thread.close(wait=ended)  # a turn still running ends on its own

    def _on_started(self, m: Message) -> None:
        # what is on screen stays (and is not laid out again): the window grows by the turn
        self._shown_n = max(self._shown_n, len(self.conversation.messages))
        rows = self._show_stored_rows()  # the question (and a new branch) are in the store now
        self._live_message = m
        self._live = next((x for x in self.conversation.messages if x.id == m.id), None)
        if self._live is None:
            self._live = ShownMessage(m.id, m.role, m.content, "")
            self.conversation.messages.append(self._live)
        else:
            self.conversation.messages = self.conversation.messages[
                : self.conversation.messages.index(self._live) + 1
            ]
            self._live.finish = ""
        ids = [r[0].id for r in rows]
        self.transcript.show_messages(
            rows[: ids.index(m.id)] if m.id in ids else rows, self._more_above
        )
        self.transcript.start_live(m)
        self._paint.start()
        self.conversationsChanged.emit()

    def _on_piece(self, text: str) -> None:
        self._pending.append(text)
        if self._clock:
            self._clock.piece()

    def _flush(self) -> None:
        if self._pending and self._live is not None and self._live_message is not None:
            self._live.content += "".join(self._pending)
            self._pending.clear()
            self._live_message = replace(self._live_message, content=self._live.content)
            self.transcript.update_live(self._live_message)
        if self._clock:
            self.ratesChanged.emit(self._clock.live())

    def _on_ended(self, m: Message) -> None:
        self._flush()
        rates: Rates | None = None
        if m.stats:
            rates = Rates(
                m.stats.ttft_s, m.stats.prompt_tps, m.stats.gen_tps, m.stats.tokens or 0, True
            )
        self._end_turn()
        self._show_stored()
        if rates:
            self.ratesChanged.emit(rates)
        self.refresh_meter()
        self.conversationsChanged.emit()

    def _on_failed(self, e: Exception) -> None:
        self._end_turn()
        _call, question = self._retry or (None, None)
        if question and not self.input.toPlainText():
            self.input.setPlainText(question)  # nothing typed is lost
        if isinstance(e, ContextFull):
            self._offer_overflow(e)
            self._overflow_shown = True  # the restored question must not ask again
        elif isinstance(e, NoChatTemplate):
            self._offer_templates()
        else:
            self._say(str(e))
        self._show_stored()

    def _end_turn(self) -> None:
        self._paint.stop()
        turn, self._turn = self._turn, None
        if turn is not None:
            # Its thread emitted its last signal and is returning; no join on the GUI thread.
            turn.deleteLater()
        self._live = None
        self._live_message = None
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.send_button.setEnabled(not busy and self._client is not None)
        self.busyChanged.emit(busy)

    # -- choices and words ------
    def _clear_choice(self) -> None:
        while self.choice.row.count():
            w = self.choice.row.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        self.choice.detail.clear()
        self.choice.detail.hide()
        self.longer = None
        self._asking_planner += 1  # an answer still on its way is for the old choice

    def _show_choice(self) -> None:
        self.choice.show()
        QTimer.singleShot(0, self._make_room_below)

    def _make_room_below(self) -> None:
        """The splitter keeps the heights it had: a choice's words and buttons would be cut
        off under the input. Give the lower part the height its content needs."""
        width = self._bottom.width()
        layout = self._bottom.layout()
        need = (
            layout.heightForWidth(width)
            if layout.hasHeightForWidth()
            else self._bottom.sizeHint().height()
        )
        # ... with the input at a few lines, not at its own (tall) liking
        need -= max(0, self.input.sizeHint().height() - INPUT_LINES_PX)
        top, below = self._split.sizes()
        if below < need and top + below > need:
            self._split.setSizes([top + below - need, need])

    def _offer_overflow(self, e: ContextFull) -> None:
        from layerlab.core.engine.supervisor import Ready

        self._clear_choice()
        self.choice.text.setText(
            f"This message would need about {e.needed:,} tokens, more than the {e.n_ctx:,} "
            "the model is loaded with."
        )
        self.overflow_new = QPushButton("Start a new chat")
        self.overflow_drop = QPushButton("Drop the oldest turns")
        # offered only once the planner says the longer context fits this cluster
        self.overflow_reload = QPushButton("Reload with a longer context")
        self.overflow_reload.hide()
        for b in (self.overflow_new, self.overflow_drop, self.overflow_reload):
            self.choice.row.addWidget(b)
        self.choice.row.addStretch(1)
        self.overflow_new.clicked.connect(self._overflow_new_chat)
        self.overflow_drop.clicked.connect(self._overflow_drop)
        self.overflow_reload.clicked.connect(self._overflow_reload)
        state = self.head.state if self.head is not None else None
        asking = self._asking_planner
        if isinstance(state, Ready):
            self.choice.detail.setText("Asking the layer map whether a longer context fits…")
            self.choice.detail.show()
            plan = state.plan

            def ask() -> None:
                try:
                    answer = longer_context(plan, self.plan_devices())
                except Exception as ex:  # a probe or header problem: say it, offer nothing
                    answer = LongerContext(
                        2 * plan.n_ctx, None, f"A longer context could not be planned: {ex}"
                    )
                if not self._closed:
                    self._longer_ready.emit((asking, answer))

            self._planner_pool.submit(ask)
        else:
            self.choice.detail.hide()
        self._show_choice()

    def _cluster_devices(self) -> list:
        """The devices the layer map plans on: this machine and the enabled workers."""
        return this_machine_devices() + self.head.worker_devices()

    def _show_longer(self, reading) -> None:
        asking, answer = reading if isinstance(reading, tuple) else (self._asking_planner, reading)
        if asking != self._asking_planner:
            return  # the choice it was for is gone
        self.longer = answer
        if answer.fits:
            self.choice.detail.hide()
            self.overflow_reload.setText(f"Reload with {answer.n_ctx:,} tokens of context")
            self.overflow_reload.show()
        else:
            self.choice.detail.setText(answer.words)
            self.choice.detail.show()
            self.overflow_reload.hide()
        QTimer.singleShot(0, self._make_room_below)

    def _overflow_new_chat(self) -> None:
        self.choice.hide()
        self.new_conversation()
        self.send()

    def _overflow_drop(self) -> None:
        self.choice.hide()
        if self.conversation_id:
            self.service.drop_oldest_turns(self.conversation_id)
            self.sampling.show_settings(self.service.settings(self.conversation_id))
        self.send()

    def _overflow_reload(self) -> None:
        self.choice.hide()
        answer = self.longer
        if self.head is not None and answer is not None and answer.plan is not None:
            self.head.load(answer.plan)  # the plan the planner made for that context
            self._say(
                f"Loading the model again with {answer.n_ctx:,} tokens of context; "
                "send again when it is ready."
            )

    def loaded_model_name(self) -> str:
        """What the person calls the loaded model (the name it was loaded as, else its file's
        name); "" when none is loaded here."""
        from layerlab.core.engine.supervisor import Ready

        state = self.head.state if self.head is not None else None
        if not isinstance(state, Ready):
            return ""
        return state.plan.model_name or Path(state.plan.model_path).name

    def _offer_templates(self, model: str | None = None) -> None:
        """The loaded model (or `model`) has no chat template: the person picks one."""
        self._clear_choice()
        self.choice.text.setText(
            no_template_words(self.loaded_model_name() if model is None else model)
        )
        self.template_list = QComboBox()
        for key, t in TEMPLATES.items():
            self.template_list.addItem(t.name, key)
        self.template_use = QPushButton("Use it")
        self.choice.row.addWidget(self.template_list)
        self.choice.row.addWidget(self.template_use)
        self.choice.row.addStretch(1)
        self.template_use.clicked.connect(self._template_chosen)
        self._show_choice()

    def _template_chosen(self) -> None:
        self.choice.hide()
        if self.conversation_id:
            self.service.choose_template(self.conversation_id, self.template_list.currentData())
            self.sampling.show_settings(self.service.settings(self.conversation_id))
        self.send()

    def _say(self, text: str, undo: bool = False) -> None:
        self.problem.setText(text + (' <a href="undo">Undo</a>' if undo else ""))
        self.problem.setTextFormat(Qt.TextFormat.RichText if undo else Qt.TextFormat.PlainText)
        self.problem.show()

    def _problem_link(self, link: str) -> None:
        if link == "undo":
            self.undo_delete()

    # -- the context meter ------
    def refresh_meter(self, draft: str = "", typed: bool = False) -> None:
        """Ask the engine (off the GUI thread) how much of the context the conversation uses,
        with `draft` (the message being typed) as its next message. Only a reading of what
        was `typed` shows or takes away the overflow choice."""
        cid = self.conversation_id
        if cid is None or self._client is None:
            self.meter.setRange(0, 1)
            self.meter.setValue(0)
            self.meter.setFormat("context: –")
            return
        self._meter_asked += 1
        asked = self._meter_asked

        def ask() -> None:
            if asked != self._meter_asked:
                return  # typing went on: a newer reading is asked for
            try:
                meter = self.service.context(cid, draft)
                over = self.service.overflow(cid, meter) if draft else None
            except Exception:
                return  # the meter keeps its last reading; the next turn asks again
            if not self._closed:
                self._meter_ready.emit((asked, cid, meter, over, typed))

        if not self._closed:
            self._turn_thread.run(ask)

    def _typed(self) -> None:
        if self._turn is None and self._editing is None:
            self._typing.start()  # counted once typing pauses, not at every key

    def _count_draft(self) -> None:
        self.refresh_meter(self.input.toPlainText().strip(), typed=True)

    def _show_meter(self, reading) -> None:
        if not isinstance(reading, tuple):
            reading = (self._meter_asked, self.conversation_id, reading, None, False)
        asked, cid, meter, over, typed = reading
        if asked != self._meter_asked or cid != self.conversation_id:
            return  # an older reading, or another conversation's
        self.meter.setMaximum(max(meter.n_ctx, 1))
        self.meter.setValue(min(meter.used, meter.n_ctx))
        self.meter.setFormat(f"context {meter.text()}")
        self.meter_value = meter
        if self._turn is not None or not typed:
            return  # a turn's own reading: the turn says what it met
        if over is not None and not self._overflow_shown:
            self._offer_overflow(over)  # before Send: the choice is there already
            self._overflow_shown = True
        elif over is None and self._overflow_shown:
            self.choice.hide()  # the draft got shorter: it fits again
            self._overflow_shown = False
