"""A greedy answer's next token, picked by llama.cpp on the device that holds the output
layer (its backend sampling), so that only the token comes back to the head.

llama.cpp's greedy sampler puts an argmax into the graph, but a chain that leaves the
logits as they were still has them copied back for llama_get_sampled_logits_ith: over a
worker, n_vocab floats a token (196 KB for the demo's 49k vocabulary, 600 KB for a 152k
one), as many bytes as picking on the host. A second sampler after the argmax, one of
ours, tells llama.cpp that this chain hands out no logits: then only the 4-byte token
crosses. The argmax is the one op every backend has (CPU, CUDA, Vulkan, Metal, SYCL); a
top-k of 1 would also drop the logits, but CUDA without CUB has no top-k over more than
1024 values, and a worker claims every op for its backend.
"""

from __future__ import annotations

import ctypes

import llama_cpp.llama_cpp as low


@low.llama_sampler_i_name
def _name(_smpl):
    return b"layerlab-token-only"


@low.llama_sampler_i_apply
def _apply(_smpl, _cur_p):
    pass  # on the host the chain's greedy has picked already: nothing to do


@low.llama_sampler_i_backend_init
def _backend_init(_smpl, _buft, _n_outputs):
    return True  # no tensors of its own, on any device


@low.llama_sampler_i_backend_apply
def _backend_apply(_smpl, _ctx, _gf, data):
    data.contents.logits = None  # the chain's result is the token alone


_TOKEN_ONLY = low.llama_sampler_i(
    name=_name, apply=_apply, backend_init=_backend_init, backend_apply=_backend_apply
)


def attach(ctx, seq: int):
    """A greedy chain for `seq`, picked on its output device; None where llama.cpp cannot
    (a tensor split, an output device without the ops), and nothing is left attached."""
    chain = low.llama_sampler_chain_init(low.llama_sampler_chain_default_params())
    low.llama_sampler_chain_add(chain, low.llama_sampler_init_greedy())
    low.llama_sampler_chain_add(chain, low.llama_sampler_init(ctypes.byref(_TOKEN_ONLY), None))
    if low.llama_set_sampler(ctx, seq, chain):
        return chain
    low.llama_sampler_free(chain)  # llama.cpp keeps no reference to a chain it refused
    return None


def detach(ctx, seq: int, chain) -> None:
    """`seq` back to the host's way: its logits come back again."""
    low.llama_set_sampler(ctx, seq, None)  # llama.cpp lets go of the chain here
    low.llama_sampler_free(chain)


def token(ctx, row: int) -> int:
    """The token picked for the batch's `row`; -1 when llama.cpp picked none."""
    return int(low.llama_get_sampled_token_ith(ctx, row))
