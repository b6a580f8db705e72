"""Search and quant listing against the stand-in, through the real huggingface_hub client."""

from __future__ import annotations

import pytest

from layerlab.core.hub.problems import HubProblem
from layerlab.core.hub.quants import pick
from layerlab.core.hub.search import repo_id_in
from tests.hub.conftest import BIG, REPO


def test_search_finds_gguf_repos_most_downloaded_first(hub):
    rows = hub.search("gguf")
    assert [r.repo_id for r in rows][:2] == [BIG, REPO]
    big = rows[0]
    assert big.downloads == 90000 and big.likes == 300
    assert big.parameters_text == "70.6B"
    assert big.updated_text == "2026-11-02"
    assert not big.gated
    gated = next(r for r in rows if r.repo_id == "tester/Gated-Tiny-GGUF")
    assert gated.gated
    assert "tester/No-GGUF-Here" not in [r.repo_id for r in rows]


def test_search_by_words_and_by_pasted_url(hub, standin):
    assert [r.repo_id for r in hub.search("tiny gated")] == ["tester/Gated-Tiny-GGUF"]
    url = f"https://huggingface.co/{REPO}/blob/main/Tiny-Q4_0.gguf"
    assert repo_id_in(url) == REPO
    assert hub.search(url)[0].repo_id == REPO
    assert hub.search(f"{REPO}:q4_0")[0].repo_id == REPO


def test_quants_group_split_parts_and_leave_out_projectors(hub, models):
    quants = hub.quants(REPO)
    tags = [q.tag for q in quants]
    assert sorted(tags) == ["F16", "Q4_0", "Q4_K_M", "Q8_0"]
    split = next(q for q in quants if q.tag == "Q4_K_M")
    assert split.parts == 2
    assert split.first == "Tiny-Q4_K_M-00001-of-00002.gguf"
    on_disk = sum(p.stat().st_size for p in models["tiny"].glob("Tiny-Q4_K_M-*.gguf"))
    assert split.size == on_disk
    assert all(f.sha256 and len(f.sha256) == 64 for q in quants for f in q.files)
    assert [q.size for q in quants] == sorted(q.size for q in quants)


def test_quant_tag_is_case_insensitive_and_defaults_to_q4_k_m(hub):
    quants = hub.quants(REPO)
    assert pick(quants, "q8_0").tag == "Q8_0"
    assert pick(quants, None).tag == "Q4_K_M"
    assert pick(quants, "Q2_K") is None


@pytest.mark.parametrize(
    ("repo", "kind", "words"),
    [
        ("tester/No-GGUF-Here", "no_gguf", "holds no GGUF"),
        ("tester/Gone", "not_found", "no such repository"),
        ("tester/Gated-Tiny-GGUF", "gated", "accept its terms"),
    ],
)
def test_listing_faults_are_words(hub, repo, kind, words):
    with pytest.raises(HubProblem) as e:
        hub.quants(repo)
    assert e.value.kind == kind
    assert words in e.value.message
    assert "Traceback" not in e.value.message and "http" not in e.value.message.lower()


def test_a_token_opens_a_gated_repo(hub):
    hub.token.set("hf_good")
    assert {q.tag for q in hub.quants("tester/Gated-Tiny-GGUF")} >= {"Q4_0", "Q8_0"}


def test_search_waits_out_a_429(hub, standin):
    # huggingface_hub's own backoff retries a search; the person sees results, a second later
    standin.search_fail = [429]
    assert hub.search("tiny")[0].repo_id == REPO
    assert [p for m, p in standin.requests if p == "/api/models"] == ["/api/models"] * 2


def test_offline_switch_means_no_search(hub, standin):
    hub.set_offline(True)
    with pytest.raises(HubProblem) as e:
        hub.search("tiny")
    assert e.value.kind == "offline"
    assert standin.requests == []
