"""Several answers decoded together: continuous batching over llama.cpp's batch API.

One thread owns the llama context. Each step it takes every running answer's next token
(and chunks of the prompts that are still being read) into one `llama_decode`, then samples
each answer from its own row of logits with its own sampler chain. A new request joins at
the next step; a cancelled one leaves at the next step and frees its slot.

The context holds `parallel` sequences, one per slot, each in its own KV stream of n_ctx
cells (llama.cpp's n_seq_max with kv_unified off, 0c1e570: n_ctx_seq = n_ctx / n_seq_max,
padded to 256). Separate streams keep each answer's attention what it would be alone (a
unified cache makes every token's softmax run over the other answers' masked cells, in
another order). The price: llama.cpp splits a batch into one micro-batch per run of
consecutive sequence ids (split_equal, sequential): answers in slots 0 and 2 cost two passes
over the weights a step where slots 0 and 1 cost one (18-20 vs 15 ms a step for the demo
model on 2 cores here). So a new answer takes the free slot that keeps the running ones in
one run, and when an answer ends and leaves a gap that no waiting request fills, the decoder
moves a running answer into it: llama.cpp copies its whole KV stream into the gap's stream
at the next decode (llama_memory_seq_cp across streams, ~1-2 ms), the same copy llama-server
makes for its n_cmpl child slots. The slot it left keeps its cache for a follow-up turn.

A greedy answer is then the same text alone or in a batch up to llama.cpp's rounding, which
is not the same for one row as for several: its CPU matrix product (llamafile sgemm) starts
at 2 rows, for Q8_0, Q4_0, Q5_0, IQ4_NL and float weights, and its CPU flash attention
splits the cache across threads only for a lone sequence with 512+ cells. So where an
answer's two best tokens are within ~1e-5, a batch may take the other one (seen on a Xeon:
the demo's Q8_0 output matrix). llama-server has the same limit (its README, cache_prompt).

Each slot remembers the tokens its sequence holds: a follow-up turn of the same conversation
lands in the slot that already holds its prefix and decodes only what is new, and a prompt
whose start another slot holds (a system prompt shared by an app's requests) copies that
slot's stream and reads only the rest.
"""

from __future__ import annotations

import collections
import contextlib
import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from layerlab.core.engine.model_session import ModelSession, Sampling

Lane = Literal["window", "api"]
LANES: tuple[Lane, ...] = ("window", "api")  # the order free slots are offered in
DONE = object()  # the last item of an answer's stream


class Outlet(Protocol):
    """Where one request's answers go (outlet.py has the event loop's kind).

    The decoder thread puts (index, item) as each comes: Pieces, then one Ending (or an
    exception), then DONE, per answer. It rings each outlet that got items once a loop turn,
    just before its next llama_decode: the reader wakes while the compute runs, not in the
    middle of the decoder's sampling, where every ctypes call lets go of the GIL and a woken
    reader would take it (each answer's request thread did, once a token, on the critical
    path of the next decode)."""

    def put(self, item: tuple[int, object]) -> None: ...

    def ring(self) -> bool:
        """Wake the reader; False when the outlet would rather be rung on the next turn."""
        ...


@dataclass
class Slot:
    """One of the context's sequences, and what its KV cache holds."""

    seq: int
    cached: list[int] = field(default_factory=list)  # tokens at positions 0.. of this sequence
    last_used: float = 0.0
    answer: Answer | None = None


class Answer:
    """One answer being written: what the request asked, and where its pieces go (its
    request's outlet, tagged with the answer's index in the request)."""

    def __init__(
        self,
        prompt: list[int],
        sampling: Sampling,
        stop: threading.Event,
        lane: Lane,
        outlet: Outlet,
        tag: int,
        touched: set[Outlet],
    ) -> None:
        self.prompt = prompt
        self.sampling = sampling
        self.stop = stop
        self.lane = lane
        self.outlet = outlet  # shared by the request's answers
        self.tag = tag
        self._touched = touched  # the decoder's: outlets to ring before its next decode
        self.queued_at = time.monotonic()
        # decoding state (the decoder thread's alone)
        self.slot: Slot | None = None
        self.todo: list[int] = []  # prompt tokens not yet decoded
        self.n_past = 0
        self.next_token: int | None = None  # sampled, decoded next step
        self.out: list[int] = []
        self.text = b""  # what `out` reads as, grown a token at a time
        self.sent = 0
        self.pending: list = []
        self.finish = "length"
        self.budget = 0
        self.sampler = None
        self.seen: dict[str, object] = {}
        self.stops: list[bytes] = [s.encode("utf-8") for s in sampling.stop]
        self.prompt_n = 0
        self.prompt_s = 0.0
        self.predicted_n = 0
        self.predicted_s = 0.0

    def put(self, item: object) -> None:
        self.outlet.put((self.tag, item))
        self._touched.add(self.outlet)


class BatchDecoder:
    """Runs every answer of one loaded model; `parallel` of them at a time."""

    def __init__(self, session: ModelSession, parallel: int) -> None:
        import llama_cpp.llama_cpp as low

        self.session = session
        self.parallel = parallel
        self.low = low
        llm = session.llm
        assert llm is not None
        self.llm = llm
        self.ctx = llm.ctx
        self.memory = low.llama_get_memory(self.ctx)
        self.n_batch = max(1, low.llama_n_batch(self.ctx))
        self.vocab = llm._model.vocab
        self.n_vocab = llm.n_vocab()
        self.slots = [Slot(i) for i in range(parallel)]
        self.queues: dict[Lane, collections.deque[Answer]] = {
            lane: collections.deque() for lane in LANES
        }
        # Moving an answer between slots copies a KV stream; recurrent state is not a stream
        # of cells, so those models keep their answers where they started, and their cache
        # is not checked position by position (_holds).
        self.cells = not (
            low.llama_model_is_recurrent(llm.model) or low.llama_model_is_hybrid(llm.model)
        )
        self.can_move = parallel > 1 and self.cells
        self.moves = 0  # answers moved to close a gap (the tests read it)
        self.borrowed = 0  # prompt tokens taken from another slot's cache, not read
        self._pieces: dict[int, bytes] = {}  # token -> its bytes (at most the vocabulary)
        self.n_swa = max(0, low.llama_model_n_swa(llm.model))  # 0: no sliding window
        self.reread = 0  # cached prefixes found incomplete and read again (the tests read it)
        # Greedy answers' tokens picked by llama.cpp on the worker that holds the output
        # layer (its backend sampling): seq -> the greedy chain attached to it there. Only
        # where the logits would cross a network: on this machine a row of them is a copy
        # (the CPU, or PCIe), and each switch between a slot's ways costs llama.cpp a new
        # graph reservation (~7-10 ms for the demo over a loopback worker).
        self.greedy_on_device = session.plan.greedy_on_device and session.output_on_worker
        from layerlab.core.engine import greedy_on_device

        self._device = greedy_on_device
        self._on_device: dict[int, object] = {}
        self.sampled_on_device = 0  # tokens picked there (the status shows it, tests read it)
        self._touched: set[Outlet] = set()  # outlets given items since the last ring
        self._wake = threading.Condition()
        self._closed = False
        self._exclusive = 0  # a measurement wants the model to itself: admit nobody
        self._idle = threading.Event()
        self._idle.set()
        # one token per slot, plus a whole batch of prompt tokens
        self.batch = low.llama_batch_init(self.n_batch + parallel, 0, 1)
        self._thread = threading.Thread(target=self._run, name="batch-decoder", daemon=True)
        self._thread.start()

    # -- what the API sees ----------------------------------------------------------------
    @property
    def running(self) -> int:
        return sum(1 for s in self.slots if s.answer is not None)

    def waiting(self, lane: Lane | None = None) -> int:
        if lane is not None:
            return len(self.queues[lane])
        return sum(len(q) for q in self.queues.values())

    def submit(
        self,
        asks: list[tuple[list[int], Sampling]],
        stop: threading.Event,
        outlet: Outlet,
        lane: Lane = "api",
    ) -> None:
        """A request's answers (one, or OpenAI's n, or several prompts), to be decoded
        together in as many slots as are free; each goes to `outlet` tagged with its index
        into `asks`. Setting `stop` ends them all at the next step."""
        with self._wake:
            for i, (prompt, sampling) in enumerate(asks):
                answer = Answer(prompt, sampling, stop, lane, outlet, i, self._touched)
                self.queues[lane].append(answer)
            self._idle.clear()
            self._wake.notify()

    @contextlib.contextmanager
    def exclusive(self, stop: threading.Event | None = None) -> Iterator[None]:
        """The model to one caller alone (the bench): running answers finish, none start;
        every slot's cache is forgotten afterwards (the caller may use the whole context)."""
        with self._wake:
            self._exclusive += 1
        try:
            while not self._quiet():
                if stop is not None and stop.is_set():
                    raise InterruptedError("stopped while waiting for the model")
                time.sleep(0.01)
            self._all_to_host()  # the caller decodes on its own: its logits must come back
            yield
        finally:
            for s in self.slots:
                s.cached = []
            with self._wake:
                self._exclusive -= 1
                self._wake.notify()

    def _quiet(self) -> bool:
        return self.running == 0

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            return  # still inside a decode: its answers are the decoder's to end
        self._all_to_host()  # the context holds the chains until told
        # Readers sleep until their answer's next item: each left must get an end, or its
        # request thread (and with it the process's exit) would wait forever.
        left = [s.answer for s in self.slots if s.answer is not None]
        with self._wake:
            for q in self.queues.values():
                left += list(q)
                q.clear()
        for s in self.slots:
            s.answer = None
        for a in left:
            a.put(RuntimeError("The engine is closing; this answer was cut short."))
            a.put(DONE)
        self._ring()

    # -- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._ring()  # the last turn's items, read while the next decode runs
            with self._wake:
                while not self._closed and not self._has_work():
                    self._idle.set()
                    self.session.generating = False
                    # an outlet that asked to be rung later is rung soon, work or not
                    self._wake.wait(0.02 if self._touched else 0.5)
                    self._ring()
                if self._closed:
                    return
                self._drop_given_up()
                self._admit()
            self._drop_cancelled()
            try:
                self._close_gap()
            except Exception as e:  # packing is for speed: answers go on where they are
                self.can_move = False
                print(f"layerlab: moving answers between slots is off: {e!r}", file=sys.stderr)
            if not any(s.answer for s in self.slots):
                continue
            self.session.generating = True
            try:
                self._step()
            except Exception as e:  # a failed decode fails the answers in that batch
                self._fail_all(e)
            self.session.last_progress = time.monotonic()

    def _ring(self) -> None:
        if not self._touched:
            return
        touched = list(self._touched)
        self._touched.clear()  # in place: every Answer holds this set
        for outlet in touched:
            if not outlet.ring():
                self._touched.add(outlet)  # not yet: again on the next turn

    def _has_work(self) -> bool:
        if any(s.answer for s in self.slots):
            return True
        if any(a.stop.is_set() for q in self.queues.values() for a in q):
            return True
        return not self._exclusive and any(self.queues.values())

    def _drop_given_up(self) -> None:
        """Requests whose client left while they waited give their place back now, not when
        a slot frees (a long answer would hold them in the count)."""
        for q in self.queues.values():
            if any(a.stop.is_set() for a in q):
                keep = [a for a in q if not a.stop.is_set()]
                for a in q:
                    if a.stop.is_set():
                        self._end(a, stopped=True)
                q.clear()
                q.extend(keep)

    def _admit(self) -> None:
        """Waiting answers into free slots: the window's lane first, each lane in order."""
        if self._exclusive:
            return
        for lane in LANES:
            q = self.queues[lane]
            while q and any(s.answer is None for s in self.slots):
                answer = q.popleft()
                if answer.stop.is_set():
                    self._end(answer, stopped=True)
                    continue
                try:
                    self._start(answer, self._pick_slot(answer.prompt))
                except Exception as e:
                    answer.put(e)
                    answer.put(DONE)

    def _pick_slot(self, prompt: list[int]) -> Slot:
        """The free slot that already holds most of this prompt, when that is most of it (a
        follow-up turn); otherwise the one that keeps the running answers in the fewest runs
        of consecutive sequence ids (one micro-batch each), then one that shares a long
        prefix (a system prompt), then the one used longest ago: a new conversation that
        shares only the chat template's first tokens leaves the others' caches alone."""
        free = [s for s in self.slots if s.answer is None]
        kept = {s.seq: _common(s.cached, prompt) for s in free}  # walked once per slot
        best = max(free, key=lambda s: (kept[s.seq], -s.seq))
        if kept[best.seq] >= _WORTH_A_SLOT and 2 * kept[best.seq] >= len(prompt):
            return best
        busy = {s.seq for s in self.slots if s.answer is not None}

        def shared(s: Slot) -> int:
            return kept[s.seq] if kept[s.seq] >= _WORTH_A_SLOT else 0

        return min(free, key=lambda s: (_runs(busy | {s.seq}), -shared(s), s.last_used, s.seq))

    def _close_gap(self) -> None:
        """One running answer into a free slot, when that puts the running answers in fewer
        runs of consecutive sequence ids (see the module's note). Only answers past their
        prompt with some way to go: the copy costs about one step."""
        if not self.can_move:
            return
        busy = {s.seq for s in self.slots if s.answer is not None}
        runs = _runs(busy)
        if runs <= 1:
            return
        free = [s for s in self.slots if s.answer is None]
        movable = [
            s
            for s in self.slots
            if s.answer is not None
            and not s.answer.todo
            and s.answer.next_token is not None
            and s.answer.budget - len(s.answer.out) >= _WORTH_MOVING
        ]
        moves = [
            (_runs(busy - {src.seq} | {dst.seq}), dst.last_used, dst.seq, src, dst)
            for src in movable
            for dst in free
        ]
        if not moves:
            return
        after, _, _, src, dst = min(moves, key=lambda m: m[:3])
        if after >= runs:
            return
        a = src.answer
        assert a is not None
        # The copy replaces dst's stream whole (its cells are reset first) and happens at the
        # next llama_decode; src's stream is left as it is, still this conversation's prefix.
        self.low.llama_memory_seq_cp(self.memory, src.seq, dst.seq, -1, -1)
        dst.cached = list(src.cached)
        dst.answer, a.slot = a, dst
        src.answer = None
        src.last_used = dst.last_used = time.monotonic()
        self.moves += 1

    def _start(self, answer: Answer, slot: Slot) -> None:
        from layerlab.core.engine.model_session import ContextTooLong

        low = self.low
        n_ctx = low.llama_n_ctx_seq(self.ctx)
        prompt = answer.prompt
        if len(prompt) >= n_ctx:
            raise ContextTooLong(n_ctx, len(prompt))
        # At least the last two prompt tokens are decoded again (the last one's logits start
        # the answer): llama.cpp's CPU matrix products round one row differently from several
        # (sgemm from 2 rows up, see above), and a prompt read whole is read in rows of many.
        # Its last token read again alone would give it other K/V values in the last digits,
        # and the answer could part from the uncached one within ~30 tokens (the demo, f16
        # cache: "regenerate" wrote another story). Two rows take the same path as many.
        keep = max(0, min(_common(slot.cached, prompt), len(prompt) - _REREAD))
        if keep < len(slot.cached) and not low.llama_memory_seq_rm(self.memory, slot.seq, keep, -1):
            low.llama_memory_seq_rm(self.memory, slot.seq, -1, -1)
            keep = 0
        if keep and not self._holds(slot.seq, keep):
            low.llama_memory_seq_rm(self.memory, slot.seq, -1, -1)
            keep = 0
            self.reread += 1
        slot.cached = prompt[:keep]
        slot.answer, answer.slot = answer, slot
        slot.last_used = time.monotonic()
        answer.todo = list(prompt[keep:])
        answer.n_past = keep
        s = answer.sampling
        answer.budget = n_ctx - len(prompt)
        if s.max_tokens:
            answer.budget = min(answer.budget, s.max_tokens)
        # a plain greedy answer is the logits' argmax: the sampler chain would copy all
        # n_vocab logits into candidates and walk them (~90 us a token for the demo's 49k,
        # ~25 us for numpy's argmax), between decodes, where the compute threads wait
        answer.sampler = None if _plain_greedy(s) else self._sampler(answer)

    def _sampler(self, answer: Answer):
        """The same chain llama-cpp-python's Llama.generate builds (so an answer samples as
        it did before batching), with its own seed and penalty window."""
        from llama_cpp.llama_grammar import LlamaGrammar

        llm, s = self.llm, answer.sampling
        grammar = LlamaGrammar.from_string(s.grammar, verbose=False) if s.grammar else None
        want_lp = s.top_logprobs is not None
        bias = s.logit_bias or {}
        processors = None
        if want_lp or bias:
            import numpy as np

            seen = answer.seen

            def look(_input_ids, logits):
                # llama.cpp's raw logits for the next token, before penalties and grammar:
                # the model's own distribution, as OpenAI reports it.
                for token, b in bias.items():
                    if 0 <= token < logits.shape[0]:
                        logits[token] += b
                if want_lp:
                    m = float(np.max(logits))
                    seen["lp"] = logits - (m + float(np.log(np.sum(np.exp(logits - m)))))
                return logits

            processors = [look]
        n_ctx = self.low.llama_n_ctx_seq(self.ctx)
        llm.set_seed(s.seed if s.seed is not None else random.getrandbits(32))
        llm.last_n_tokens_size = n_ctx if s.repeat_last_n == -1 else s.repeat_last_n
        return llm._init_sampler(
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            typical_p=s.typical_p,
            temp=s.temperature,
            repeat_penalty=s.repeat_penalty,
            frequency_penalty=s.frequency_penalty,
            presence_penalty=s.presence_penalty,
            mirostat_mode=s.mirostat_mode,
            mirostat_tau=s.mirostat_tau,
            mirostat_eta=s.mirostat_eta,
            logits_processor=processors,
            grammar=grammar,
        )

    def _drop_cancelled(self) -> None:
        for slot in self.slots:
            a = slot.answer
            if a is not None and a.stop.is_set():
                a.finish = "stop"
                self._flush(a)
                self._end(a, stopped=True)

    def _step(self) -> None:
        """One llama_decode over every running answer's next token, then one sampled token
        each; then the next chunk of each prompt still being read, each in a decode of its
        own (up to n_batch prompt tokens a step, so a long prompt does not stall the others).

        A prompt shares no decode with other sequences because llama.cpp splits a batch into
        micro-batches with as many tokens of each sequence (split_equal): a prompt's last
        tokens beside other answers' one token each would be read a row at a time, which
        rounds differently from the rows of many it is read in alone (see the module's note),
        and the answer could part from its alone self. Apart, it is read as it would be alone,
        in as many passes over the weights as split_equal would have made."""
        answers = [s.answer for s in sorted(self.slots, key=lambda s: s.seq) if s.answer]
        running = [a for a in answers if not a.todo and a.next_token is not None]
        if running:
            self._pick_where(running)
            took = self._decode([(a.next_token, a) for a in running], len(running))  # type: ignore[misc]
            self.session.warm = True
            for i, a in enumerate(running):
                slot = a.slot
                assert slot is not None
                slot.cached.append(a.next_token)  # type: ignore[arg-type]
                a.n_past += 1
                a.predicted_n += 1
                a.predicted_s += took
                self._take(a, self._sample(a, i))
        budget = self.n_batch
        for a in answers:
            if not a.todo or budget <= 0 or a.slot is None:
                continue
            if not a.prompt_n:
                self._borrow_prefix(a)
            # what is written so far goes out before this prompt's decode (~150 ms for 40
            # tokens of the demo here), not after every prompt of the step: four first tokens
            # waited for four prompts' reading (0.6-0.7 s for the first of them)
            self._ring()
            chunk, a.todo = a.todo[: self.n_batch], a.todo[self.n_batch :]
            budget -= len(chunk)
            if not a.todo:  # this decode's last row gives the answer's first token
                self._pick_where([a])
            took = self._decode([(t, a) for t in chunk], 1 if not a.todo else 0)
            self.session.warm = True
            a.prompt_n += len(chunk)
            a.prompt_s += took
            slot = a.slot
            slot.cached.extend(chunk)
            a.n_past += len(chunk)
            if not a.todo:
                self._take(a, self._sample(a, len(chunk) - 1))
        self.session.last_progress = time.monotonic()

    def _borrow_prefix(self, a: Answer) -> None:
        """A prompt that another slot holds more of than its own (the system prompt every
        request of an app starts with, the household's shared one) takes that slot's cache
        instead of reading the shared part again: four new conversations at once read their
        common start once, not four times. llama.cpp copies the whole KV stream at the next
        llama_decode (this prompt's own, so the copy is in place before its first token is
        written); the cells past the shared part are dropped here. A slot's own cache is
        only given up for a longer shared part, so nothing it would have kept is lost."""
        slot = a.slot
        if not self.can_move or slot is None:
            return
        limit = len(a.prompt) - _REREAD  # as in _start: the last tokens are read again
        donor, n = None, a.n_past
        for s in self.slots:
            k = min(_common(s.cached, a.prompt), limit) if s is not slot else 0
            if k > n and self._holds(s.seq, k):
                donor, n = s, k
        if donor is None or n - a.n_past < _WORTH_BORROWING:
            return
        low = self.low
        low.llama_memory_seq_cp(self.memory, donor.seq, slot.seq, -1, -1)
        low.llama_memory_seq_rm(self.memory, slot.seq, n, -1)
        slot.cached = donor.cached[:n]
        a.n_past = n
        a.todo = list(a.prompt[n:])
        self.borrowed += n

    def _holds(self, seq: int, n: int) -> bool:
        """Whether sequence `seq`'s cache still has what a token at position n attends to:
        every position from 0 (or, for a sliding-window model, from n - n_swa) up. A
        sliding-window layer may have given its cells past the window to newer tokens,
        and a prefix read from such a cache would be silently wrong: the prompt is then
        read again whole, as llama-server does ("lack of cache data")."""
        if not self.cells:  # a recurrent state is one position: llama.cpp keeps it whole
            return True
        low = self.low
        pos_min = low.llama_memory_seq_pos_min(self.memory, seq)
        pos_max = low.llama_memory_seq_pos_max(self.memory, seq)
        need = max(0, n - self.n_swa) if self.n_swa else 0
        return 0 <= pos_min <= need and pos_max >= n - 1

    def _pick_where(self, answers: list[Answer]) -> None:
        """Before a decode that gives these answers their next token: a plain greedy one's
        token is picked on the device (llama.cpp's greedy sampler, an argmax in the graph),
        any other's on the host from the logits. Only the token then crosses from a worker
        that holds the output layer. A change costs llama.cpp a new graph reservation once;
        a slot keeps its way between answers, so a run of greedy requests pays it once."""
        for a in answers:
            slot = a.slot
            assert slot is not None
            want = self.greedy_on_device and a.sampler is None
            if want == (slot.seq in self._on_device):
                continue
            if not want:
                self._to_host(slot.seq)
                continue
            chain = self._device.attach(self.ctx, slot.seq)
            if chain is not None:
                self._on_device[slot.seq] = chain
                continue
            # llama.cpp cannot on this load (a tensor split): every answer picks on the host
            self.greedy_on_device = False
            print(
                "layerlab: greedy tokens are picked on the head: llama.cpp cannot pick them "
                "on this model's output device",
                file=sys.stderr,
            )

    def _to_host(self, seq: int) -> None:
        chain = self._on_device.pop(seq, None)
        if chain is not None:
            self._device.detach(self.ctx, seq, chain)

    def _all_to_host(self) -> None:
        for seq in list(self._on_device):
            self._to_host(seq)

    def _sample(self, a: Answer, row: int) -> int:
        """The answer's next token from the logits of the batch's `row`."""
        if a.sampler is not None:
            return a.sampler.sample(self.llm._ctx, row)
        slot = a.slot
        if slot is not None and slot.seq in self._on_device:
            token = self._device.token(self.ctx, row)
            if token < 0:  # LLAMA_TOKEN_NULL: never left silent, the batch's answers fail
                raise RuntimeError("llama.cpp picked no token for a greedy answer")
            self.sampled_on_device += 1
            return token
        import numpy as np

        logits = self.low.llama_get_logits_ith(self.ctx, row)
        # the first of equal bests, as llama.cpp's greedy sampler takes it
        return int(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())

    def _decode(self, tokens: list[tuple[int, Answer]], n_logits: int) -> float:
        """One llama_decode of (token, answer) at each answer's next positions; logits for
        the last `n_logits` rows. Returns the seconds it took."""
        low, b = self.low, self.batch
        n = len(tokens)
        pos: dict[int, int] = {}
        for i, (token, a) in enumerate(tokens):
            slot = a.slot
            assert slot is not None
            p = pos.get(slot.seq, a.n_past)
            pos[slot.seq] = p + 1
            b.token[i] = token
            b.pos[i] = p
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = slot.seq
            b.logits[i] = i >= n - n_logits
        b.n_tokens = n
        t0 = time.perf_counter()
        rc = low.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(
                "llama.cpp could not fit this batch in the context's cache"
                if rc == 1
                else f"llama_decode returned {rc}"
            )
        # llama_decode returns once the graph is queued; the devices (a worker over RPC above
        # all) finish it when the logits are first read. Wait here, so the step's time is
        # the compute's and the answer's tok/s is what the person gets.
        low.llama_synchronize(self.ctx)
        return time.perf_counter() - t0

    def _take(self, a: Answer, token: int) -> None:
        """One sampled token: the answer ends, or hands out what text it can."""
        from layerlab.core.engine.model_session import Piece, _safe_end

        if self.low.llama_vocab_is_eog(self.vocab, token):
            a.finish = "stop"
            self._flush(a)
            self._end(a)
            return
        a.out.append(token)
        a.next_token = token
        if a.sampling.top_logprobs is not None:
            a.pending.append(self.session._logprob(token, a.seen["lp"], a.sampling.top_logprobs))
        text = a.text = a.text + self._piece(a, token)
        hit = min((i for s in a.stops if (i := text.find(s, a.sent)) >= 0), default=-1)
        if hit >= 0:
            a.put(Piece(text[a.sent : hit].decode("utf-8", "replace"), a.pending))
            a.sent, a.pending, a.finish = hit, [], "stop"
            self._end(a)
            return
        end = _safe_end(text, a.stops)
        if end > a.sent:
            a.put(Piece(text[a.sent : end].decode("utf-8", "replace"), a.pending))
            a.sent, a.pending = end, []
        if len(a.out) >= a.budget:
            a.finish = "length"
            self._flush(a)
            self._end(a)

    def _piece(self, a: Answer, token: int) -> bytes:
        """The bytes `token` adds to the answer's text: llama-cpp-python's detokenize(out),
        one token at a time (reading the whole answer again each token grew with its
        length: ~0.3 ms a step for four 128-token answers here). Its one rule across
        tokens: an answer that starts with BOS loses one leading space."""
        piece = self._pieces.get(token)
        if piece is None:  # a token's bytes alone are always the same: looked up once
            piece = self._pieces[token] = self.llm.detokenize([token])
        if not a.text and a.out[0] == self.llm.token_bos() and piece[:1] == b" ":
            piece = piece[1:]
        return piece

    def _flush(self, a: Answer) -> None:
        """What was held back (a possible stop string's start, a partial character)."""
        from layerlab.core.engine.model_session import Piece

        rest = a.text[a.sent :]
        if rest or a.pending:
            a.put(Piece(rest.decode("utf-8", "replace"), a.pending))
            a.sent, a.pending = a.sent + len(rest), []

    def _end(self, a: Answer, stopped: bool = False) -> None:
        from layerlab.core.engine.model_session import Ending, Timings

        slot = a.slot
        if slot is not None:
            slot.answer = None
            slot.last_used = time.monotonic()
            a.slot = None
        if a.sampler is not None:
            a.sampler.close()
            a.sampler = None
        a.put(
            Ending(
                finish_reason=a.finish if not stopped else "stop",
                prompt_tokens=len(a.prompt),
                completion_tokens=len(a.out),
                timings=Timings(a.prompt_n, a.prompt_s * 1000, a.predicted_n, a.predicted_s * 1000),
                stopped_by_client=stopped,
            )
        )
        a.put(DONE)

    def _fail_all(self, error: Exception) -> None:
        for slot in self.slots:
            a = slot.answer
            if a is None:
                continue
            self.low.llama_memory_seq_rm(self.memory, slot.seq, -1, -1)
            slot.cached = []
            slot.answer = None
            a.slot = None
            a.put(RuntimeError(f"The engine failed while answering: {error}"))
            a.put(DONE)


def _plain_greedy(s: Sampling) -> bool:
    """Temperature 0 and nothing that changes or reads the logits: llama-cpp-python's chain
    (penalties, grammar, greedy) would then pick the best logit and nothing else."""
    return (
        s.temperature == 0
        and s.grammar is None
        and s.top_logprobs is None
        and not s.logit_bias
        and (
            s.repeat_last_n == 0
            or (s.repeat_penalty == 1.0 and s.frequency_penalty == 0 and s.presence_penalty == 0)
        )
    )


_REREAD = 2  # prompt tokens read again from a slot's cache (see _start)
_WORTH_A_SLOT = 32  # shared prompt tokens that make a slot the one to take, gaps or not
_WORTH_MOVING = 8  # tokens an answer may still write for a move to pay for its copy
# Shared prompt tokens worth a KV stream's copy. The copy moves the whole stream (n_ctx
# cells): for the demo on 2 CPU cores ~2 ms against ~4 ms a prompt token; for an 8B model on
# a GPU (1 GiB stream at 8k cells, f16) ~2 ms against ~0.1 ms a token, about 20 tokens.
_WORTH_BORROWING = 16


def _runs(seqs: set[int]) -> int:
    """Runs of consecutive sequence ids: llama.cpp's micro-batches for one token each."""
    return sum(1 for s in seqs if s - 1 not in seqs)


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
