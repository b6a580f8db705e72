"""The OpenAI API as clients use it, with the real `openai` client, against the engine and
against `serve` (every test runs on both)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.api.conftest import N_CTX

ASK = [{"role": "user", "content": "Name a colour."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def chat(api, **kw):
    return api.client().chat.completions.create(
        model=api.model, **{"messages": ASK, "temperature": 0, "max_tokens": 8, **kw}
    )


def test_models_lists_the_loaded_model_with_its_context_and_owner(api):
    models = api.client().models.list().data
    assert [m.id for m in models] == [api.model]
    assert models[0].owned_by == "layerlab"
    assert models[0].model_extra["context_length"] == N_CTX


def test_usage_counts_the_whole_prompt_and_exactly_the_answer(api):
    first = chat(api, max_tokens=5)
    again = chat(api, max_tokens=5)  # the prompt is cached now: still counted whole
    assert first.usage.completion_tokens == 5 and first.choices[0].finish_reason == "length"
    assert again.usage.prompt_tokens == first.usage.prompt_tokens > 5
    assert again.usage.total_tokens == again.usage.prompt_tokens + 5


def test_parts_list_content_is_read_and_other_parts_are_refused_by_name(api):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}]
    assert (
        chat(api, messages=parts, max_tokens=4).choices[0].message.content
        == chat(api, max_tokens=4).choices[0].message.content
    )
    image = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    with pytest.raises(openai.BadRequestError) as e:
        chat(api, messages=[{"role": "user", "content": image}])
    assert "image_url" in e.value.message and e.value.body["param"].startswith("messages.0")


def test_streaming_with_include_usage_ends_with_a_usage_only_chunk(api):
    chunks = list(chat(api, max_tokens=4, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert chunks[-2].choices[0].finish_reason == "length"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == chat(api, max_tokens=4).choices[0].message.content


def test_forced_tool_call_has_the_openai_shape_and_valid_arguments(api):
    r = chat(
        api,
        messages=[{"role": "user", "content": "What is the weather in Paris for 3 days?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    args = json.loads(call.function.arguments)
    assert isinstance(args["city"], str) and isinstance(args["days"], int)


def test_required_tool_call_streams_its_arguments_piece_by_piece(api):
    """As OpenAI streams a call: its id and name first, then the arguments as written, which
    the real client's stream helper joins and parses."""
    strict = {**WEATHER, "function": {**WEATHER["function"], "strict": True}}
    with api.client().chat.completions.stream(
        model=api.model,
        messages=[{"role": "user", "content": "Weather in Oslo, 2 days?"}],
        tools=[strict],
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    chunks = [e.chunk for e in events if e.type == "chunk"]
    deltas = [
        c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls
    ]
    assert deltas and deltas[0][0].function.name == "get_weather" and deltas[0][0].id
    args = "".join(d[0].function.arguments or "" for d in deltas)
    assert set(json.loads(args)) == {"city", "days"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    pieces = [e for e in events if e.type == "tool_calls.function.arguments.delta"]
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    call = final.choices[0].message.tool_calls[0]
    assert len(pieces) > 3  # as they are written, not one delta once the call is complete
    assert "".join(p.arguments_delta for p in pieces) == call.function.arguments == args
    assert done[0].name == "get_weather" and set(done[0].parsed_arguments) == {"city", "days"}
    assert final.choices[0].finish_reason == "tool_calls" and call.id == deltas[0][0].id


def test_a_tool_answer_goes_back_to_the_model(api):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 1}'},
    }
    r = chat(
        api,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
        ],
        tools=[WEATHER],
        tool_choice="none",
        max_tokens=6,
    )
    assert r.choices[0].message.content and r.choices[0].message.tool_calls is None


def test_json_schema_answer_parses_and_meets_the_schema(api):
    r = chat(
        api,
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON},
        },
        max_tokens=60,
    )
    data = json.loads(r.choices[0].message.content)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_json_object_answer_is_a_json_object(api):
    r = chat(api, response_format={"type": "json_object"}, max_tokens=40)
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_penalties_change_the_answer(api):
    # greedy here repeats itself ('-of-the-tablet-of-the-'); penalised, the repeats lose
    ask = {"model": api.model, "prompt": "sea sea sea sea sea sea", "max_tokens": 12}
    c = api.client()
    plain = c.completions.create(temperature=0, **ask).choices[0].text
    penalised = (
        c.completions.create(temperature=0, presence_penalty=2, frequency_penalty=2, **ask)
        .choices[0]
        .text
    )
    assert penalised != plain


def test_logprobs_and_top_logprobs(api):
    r = chat(api, max_tokens=4, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == 4 and "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        assert t.top_logprobs[0].logprob >= t.logprob - 1e-6  # greedy takes the likeliest


def test_n_answers_stop_seed_and_user(api):
    r = chat(api, n=2, max_tokens=3, user="someone", seed=7)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage.completion_tokens == 6
    full = chat(api, max_tokens=12).choices[0].message.content
    cut = full.split()[1]
    stopped = chat(api, max_tokens=12, stop=[cut])
    assert (
        stopped.choices[0].finish_reason == "stop" and cut not in stopped.choices[0].message.content
    )


def test_a_prompt_longer_than_the_context_is_the_clients_400(api):
    with pytest.raises(openai.BadRequestError) as e:
        chat(api, messages=[{"role": "user", "content": "word " * (N_CTX + 50)}])
    assert e.value.code == "context_length_exceeded"
    assert str(N_CTX) in e.value.message and "tokens" in e.value.message


def test_another_models_name_is_a_404_naming_the_loaded_one(api):
    with pytest.raises(openai.NotFoundError) as e:
        api.client().chat.completions.create(model="gpt-4o", messages=ASK, max_tokens=2)
    assert api.model in e.value.message and e.value.body["param"] == "model"


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"suffix": "x"}, "suffix"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"top_a": 0.5}, "top_a"),
        ({"best_of": 3}, "best_of"),
    ],
)
def test_completions_refuse_what_they_would_ignore_by_name(api, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        api.client().completions.create(
            model=api.model, prompt="Hello", max_tokens=2, extra_body=extra
        )
    assert param in e.value.message and e.value.body["param"] == param


def test_completions_plain_streamed_and_echoed(api):
    c = api.client()
    r = c.completions.create(model=api.model, prompt="The sea is", max_tokens=4, temperature=0)
    assert r.object == "text_completion" and r.usage.completion_tokens == 4
    echoed = c.completions.create(
        model=api.model, prompt="The sea is", max_tokens=4, temperature=0, echo=True, logprobs=2
    )
    assert echoed.choices[0].text == "The sea is" + r.choices[0].text
    assert len(echoed.choices[0].logprobs.tokens) == 4
    streamed = list(
        c.completions.create(
            model=api.model, prompt="The sea is", max_tokens=4, temperature=0, stream=True
        )
    )
    assert "".join(s.choices[0].text for s in streamed) == r.choices[0].text


def test_embeddings_say_the_model_is_not_loaded_for_them(api):
    with pytest.raises(openai.BadRequestError) as e:
        api.client().embeddings.create(model=api.model, input="hello")
    assert "embeddings" in e.value.message and e.value.code == "embeddings_not_loaded"


def test_llama_server_conveniences(api):
    h = api.headers
    props = httpx.get(api.base + "/props", headers=h).json()
    assert props["default_generation_settings"]["n_ctx"] == N_CTX
    assert "im_start" in props["chat_template"] and props["model_path"].endswith(".gguf")
    tokens = httpx.post(api.base + "/tokenize", headers=h, json={"content": "Hello world"}).json()
    assert tokens["tokens"] and all(isinstance(t, int) for t in tokens["tokens"])
    text = httpx.post(api.base + "/detokenize", headers=h, json=tokens).json()["content"]
    assert text == "Hello world"
    assert httpx.get(api.base + "/health").json()["status"] == "ok"


def test_errors_have_the_openai_shape(api):
    r = httpx.post(
        api.base + "/v1/chat/completions",
        headers=api.headers,
        json={"messages": ASK, "temperature": 9},
    )
    err = r.json()["error"]
    assert r.status_code == 400 and set(err) >= {"message", "type", "param", "code"}
    assert err["param"] == "temperature"
    assert httpx.get(api.base + "/v1/models").status_code == 401
