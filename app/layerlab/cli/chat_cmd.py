"""Chat in a terminal, on the same conversations as the window (like `ollama run`).

layerlab chat                      interactive; Ctrl+C stops an answer, Ctrl+D leaves
layerlab chat -m "text"            send one message, print the streamed answer
layerlab chat -m "more" --conversation ID    go on with a conversation
layerlab chat --list | --export ID [--format md|json] | --export-all | --import FILE
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from layerlab.core.chat.service import AnswerEvent, ChatService
    from layerlab.core.head import Head

HELP = "chat in the terminal, on the same conversations as the window"
STORE_ENV = "LAYERLAB_CHAT_STORE"  # another chat database (tests; a second history)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--message", help="send this one message and print the answer")
    p.add_argument("--conversation", help="the conversation to go on with (its id)")
    p.add_argument("--list", action="store_true", help="list the conversations, newest first")
    p.add_argument("--export", metavar="ID", help="print a conversation")
    p.add_argument("--export-all", action="store_true", help="print every conversation (JSON)")
    p.add_argument("--format", choices=("md", "json"), default="md", help="for --export")
    p.add_argument("--import", dest="import_file", metavar="FILE", help="import a JSON export")
    p.add_argument("--model", help="GGUF file to chat with (default: the bundled demo model)")
    p.add_argument("--ctx", type=int, default=4096, help="context size in tokens")
    p.add_argument("--temperature", type=float, help="for a new conversation")
    p.add_argument("--max-tokens", type=int, help="for a new conversation")
    p.add_argument("--store", help=f"the chat database (default: the app's; or {STORE_ENV})")


def _say(text: str) -> None:
    print(f"layerlab chat: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from layerlab.core.chat.service import ChatService
    from layerlab.core.chat.store import ImportProblem, StoreReadOnly

    store = args.store or os.environ.get(STORE_ENV)
    chat = ChatService(lambda: None, Path(store) if store else None)
    try:
        if chat.store.message:
            _say(chat.store.message)
        if args.list:
            return _list(chat)
        if args.export:
            return _export(chat, args.export, args.format)
        if args.export_all:
            print(json.dumps(chat.store.export_all(), ensure_ascii=False, indent=1))
            return 0
        if args.import_file:
            from layerlab.core.chat.store import load_export

            ids = chat.store.import_json(load_export(Path(args.import_file)))
            for cid in ids:
                print(cid)
            return 0
        chat.close()
        return _with_model(args, Path(store) if store else None)
    except (ImportProblem, StoreReadOnly, KeyError) as e:
        _say(str(e).strip("'\""))
        return 1
    finally:
        chat.close()


def _list(chat: ChatService) -> int:
    import time

    for c in chat.conversations():
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated))
        print(f"{c.id}  {when}  {c.title or '(untitled)'}")
    return 0


def _export(chat: ChatService, cid: str, fmt: str) -> int:
    if fmt == "json":
        print(json.dumps(chat.store.export_json(cid), ensure_ascii=False, indent=1))
    else:
        print(chat.store.export_markdown(cid), end="")
    return 0


def _with_model(args: argparse.Namespace, store: Path | None) -> int:
    from layerlab.core.head import Head

    head = Head(persist=False)
    try:
        return _chat(args, head, store)
    finally:
        head.close()


def _load(args: argparse.Namespace, head: Head) -> str:
    """Load the model; '' when ready, else the problem in words."""
    from layerlab.core.demo_model import DEMO_NAME, DemoModelMissing, demo_model_path
    from layerlab.core.engine.supervisor import Failed, Ready
    from layerlab.core.load_plan import default_plan

    try:
        if args.model:
            model, name = os.path.abspath(args.model), os.path.basename(args.model)
            if not os.path.isfile(model):
                return f"there is no file at {model}"
        else:
            model, name = str(demo_model_path()), DEMO_NAME
    except DemoModelMissing as e:
        return str(e)
    _say(f"loading {name}…")
    head.load(default_plan(model, None, args.ctx, name))
    state = head.supervisor.wait_for((Ready, Failed), 600)
    if isinstance(state, Ready):
        return ""
    return getattr(state, "message", "the model did not load")


def _chat(args: argparse.Namespace, head: Head, store: Path | None) -> int:
    from dataclasses import replace

    from layerlab.core.chat.service import ChatService
    from layerlab.core.chat.store import ConversationSettings
    from layerlab.core.chat.templates import TEMPLATES

    problem = _load(args, head)
    if problem:
        _say(problem)
        return 1
    chat = ChatService(head.client, store, engine_state=lambda: head.state)
    try:
        if chat.store.read_only:
            _say(chat.store.message)
            return 1
        if args.conversation:
            cid = chat.store.conversation(args.conversation).id
        else:
            settings = ConversationSettings()
            sampling = settings.sampling
            if args.temperature is not None:
                sampling = replace(sampling, temperature=args.temperature)
            if args.max_tokens is not None:
                sampling = replace(sampling, max_tokens=args.max_tokens)
            cid = chat.new_conversation(settings=replace(settings, sampling=sampling)).id
        if chat.needs_template(cid):
            _say(
                "this model has no chat template (a base model); its answers use plain "
                f"completion. (Templates: {', '.join(TEMPLATES)}.)"
            )
            chat.choose_template(cid, "plain")
        if args.message is not None:
            ok = _turn(chat, cid, args.message)
            _say(f"conversation {cid}")
            return 0 if ok else 1
        return _interactive(chat, cid)
    finally:
        chat.close()


def _turn(chat: ChatService, cid: str, text: str) -> bool:
    """One message and its streamed answer; Ctrl+C stops the answer, not the program."""
    from layerlab.core.chat.service import ContextFull, Ended, Piece

    result: dict = {}

    def show(ev: AnswerEvent) -> None:
        if isinstance(ev, Piece):
            sys.stdout.write(ev.text)
            sys.stdout.flush()
        elif isinstance(ev, Ended):
            sys.stdout.write("\n")
            if ev.message.finish == "stopped":
                _say("stopped")
            if ev.message.note:
                _say(ev.message.note)
            if ev.message.stats:
                _say(ev.message.stats.line())

    def work() -> None:
        try:
            result["answer"] = chat.send(cid, text, show)
        except Exception as e:
            result["problem"] = e

    # Not a daemon: the answer must reach the store before the program ends.
    thread = threading.Thread(target=work, name="chat-turn")
    thread.start()
    while thread.is_alive():
        try:
            thread.join(0.2)
        except KeyboardInterrupt:
            chat.stop()
    problem = result.get("problem")
    if isinstance(problem, ContextFull):
        _say(f"{problem} (In the terminal: start a new chat with `layerlab chat`.)")
        return False
    if problem is not None:
        _say(str(problem))
        return False
    return result["answer"].finish != "error"


def _interactive(chat: ChatService, cid: str) -> int:
    _say(f"conversation {cid}; Ctrl+C stops an answer, Ctrl+D (or /bye) leaves, /new starts over")
    while True:
        try:
            text = input(">>> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        text = text.strip()
        if not text:
            continue
        if text in ("/bye", "/quit", "/exit"):
            return 0
        if text == "/new":
            cid = chat.new_conversation(settings=chat.settings(cid)).id
            _say(f"conversation {cid}")
            continue
        _turn(chat, cid, text)
