"""Entropix sampling (valle_hf.entropix): the attention it reads is the attention the model computes, its metrics and
branches follow the original's definitions where they are right, and the original's slips are not copied."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from valle_hf.configuration import SettingError
from valle_hf.entropix import (
    AttentionProbe,
    EntropixLogitsWarper,
    entropix_metrics,
    probing_attention,
    record_attention,
)
from valle_hf.errors import VallEValueError
from valle_hf.layout import pad, tts_sequence
from valle_hf.logits_process import build_sampler_processors


def _rows(model):
    """Two rows of different text and prompt lengths."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    texts = [torch.randint(3, config.text_vocab_size, (length,), generator=generator) for length in (12, 5)]
    prompts = [torch.randint(0, config.audio_vocab_size, (frames, config.num_rvq_levels), generator=generator)
               for frames in (40, 20)]
    return texts, prompts


def _pass_inputs(model):
    """A left-padded batch of level-0 passes over `_rows`."""
    texts, prompts = _rows(model)
    ids, mask = pad([tts_sequence(model.config, text, 0, len(prompt))
                     for text, prompt in zip(texts, prompts, strict=True)], model.config.pad_token_id)
    return dict(input_ids=ids, attention_mask=mask, prompt_codes=pad(prompts, 0, side="right")[0], level=0)


def _generate_inputs(model):
    """`generate`'s inputs for `_rows`."""
    texts, prompts = _rows(model)
    ids, mask = pad(texts, 0, side="right")
    codes, codes_mask = pad(prompts, 0, side="right")
    return dict(input_ids=ids, attention_mask=mask, prompt_codes=codes, prompt_attention_mask=codes_mask)


@torch.no_grad()
def test_the_probe_records_the_attention_the_model_computes(tiny_model):
    """Softmax of the recorded scores is each layer's attention of the last position, as transformers' eager
    attention computes it (padding, scaling and heads included)."""
    inputs = _pass_inputs(tiny_model)
    with probing_attention() as probe:
        tiny_model(**inputs)
    recorded = dict(probe.scores)
    eager = copy.deepcopy(tiny_model)
    eager.set_attn_implementation("eager")
    weights = {}
    for index, layer in enumerate(eager.model.backbone.layers):
        layer.self_attn.register_forward_hook(lambda module, args, output, index=index: weights.update({index:
                                                                                                       output[1]}))
    eager(**inputs)
    assert sorted(recorded) == sorted(weights) == list(range(tiny_model.config.num_hidden_layers))
    for index, scores in recorded.items():
        torch.testing.assert_close(scores.softmax(-1), weights[index][:, :, -1].float())
    # each row's padding is masked out of its scores
    padding = inputs["attention_mask"] == 0
    assert padding.any() and bool(torch.isinf(recorded[0][padding.nonzero()[:, 0], :, padding.nonzero()[:, 1]]).all())


def test_the_probe_adds_an_additive_mask_and_uses_the_layers_scaling():
    """Scores of the last query position: q . k times the layer's own scaling, each query head against its key-value
    head (grouped heads), plus an additive mask's last row."""
    generator = torch.Generator().manual_seed(0)
    batch, heads, kv_heads, length, keys, dim = 2, 4, 2, 3, 5, 8
    query = torch.randn(batch, heads, length, dim, generator=generator)
    key = torch.randn(batch, kv_heads, keys, dim, generator=generator)
    mask = torch.zeros(batch, 1, length, keys + 1)  # wider than the keys, as a static cache's mask can be
    mask[0, 0, -1, 1] = mask[1, 0, -1, 3] = -1e4
    mask[:, 0, 0, 0] = -1e4  # an earlier query row: not read
    module = torch.nn.Module()
    module.layer_idx = 1
    with probing_attention() as probe:
        record_attention(module, query, key, mask, scaling=0.25)
    expected = torch.empty(batch, heads, keys)
    for head in range(heads):
        kv = head // (heads // kv_heads)
        expected[:, head] = torch.einsum("bd,bkd->bk", query[:, head, -1], key[:, kv]) * 0.25
    expected += mask[:, :, -1, :keys]
    assert list(probe.scores) == [1]
    torch.testing.assert_close(probe.scores[1], expected)


def test_the_probe_gives_each_row_the_last_layer_it_ran():
    probe = AttentionProbe()
    probe.scores = {layer: torch.full((2, 1, 3), float(layer)) for layer in range(4)}
    probe.layers_run = torch.tensor([2, 4])
    assert probe.last_layer_scores()[:, 0, 0].tolist() == [1.0, 3.0]
    assert probe.scores == {}  # forgotten: the next step records its own
    with pytest.raises(VallEValueError, match="attn_implementation='sdpa'"):
        probe.last_layer_scores()


def test_the_metrics_in_bits_over_a_rows_own_keys():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, -math.inf]])  # uniform over 4, one token impossible
    scores = torch.tensor([[[0.0, 0.0, 2.0, -math.inf], [0.0, 0.0, 2.0, -math.inf]]])  # two agreeing heads
    metrics = entropix_metrics(logits, scores)
    assert metrics["entropy"].item() == pytest.approx(2.0) and metrics["varentropy"].item() == pytest.approx(0.0)
    probs = torch.tensor([1.0, 1.0, math.exp(2.0)]) / (2 + math.exp(2.0))
    assert metrics["attention_entropy"].item() == pytest.approx(float(-(probs * probs.log2()).sum()))
    assert metrics["attention_varentropy"].item() == 0.0 and metrics["agreement"].item() == 0.0
    assert metrics["interaction"].item() == pytest.approx(2.0 / 3.0)  # the mean |score| of the 3 keys it attends to
    # disagreeing heads, and padding that does not change anything
    scores = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 0.0, 4.0]]])
    padded = torch.cat([torch.full((1, 2, 2), -math.inf), scores], dim=-1)
    alone, with_padding = entropix_metrics(logits, scores), entropix_metrics(logits, padded)
    assert alone["agreement"].item() > 0.1
    for name, value in alone.items():
        torch.testing.assert_close(with_padding[name], value)
    # heads of 2 and 1 bits: their mean, and their variance as the original's torch.var (n - 1: one head has none)
    scores = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -math.inf, -math.inf]]])
    metrics = entropix_metrics(logits, scores)
    assert metrics["attention_entropy"].item() == pytest.approx(1.5)
    assert metrics["attention_varentropy"].item() == pytest.approx(0.5)
    assert entropix_metrics(logits, scores[:, :1])["attention_varentropy"].item() == 0.0


@pytest.mark.parametrize("logits, branch", [
    ([20.0] + [0.0] * 99, 0),  # confident
    ([0.0] * 100, 1),  # unsure but consistent: uniform over 100 (6.6 bits, no varentropy)
    ([4.6] + [0.0] * 99, 2),  # spread: one token of p = 0.5, the rest over 99 others (4.3 bits, 11 bits²)
    ([6.0] * 4 + [0.0] * 996, 3),  # lost: high entropy and varentropy
    ([2.0, 1.0, 0.0, 0.0], 4),  # otherwise
    ([0.0] * 16, 4),  # uniform over 16 (4 bits, no varentropy): not above the high entropy, so otherwise
])
def test_the_branch_follows_entropy_and_varentropy(logits, branch):
    logits = torch.tensor([logits])
    metrics = entropix_metrics(logits, torch.zeros(1, 2, 3))
    assert EntropixLogitsWarper._branches(metrics).tolist() == [branch], metrics


def _settings(branch: int, **base):
    warper = EntropixLogitsWarper(**{"temperature": 1.0, **base})
    metrics = {name: torch.tensor([0.5]) for name in ("entropy", "varentropy", "attention_entropy",
                                                      "attention_varentropy", "agreement", "interaction")}
    return [value.item() for value in warper._settings(torch.tensor([branch]), metrics, vocab=1024)]


def test_each_branch_scales_the_settings_as_the_original_and_clamps_them():
    assert _settings(1, temperature=0.5) == pytest.approx([0.5 * 1.4, 1024, 1.0, 0.01], rel=1e-6)
    assert _settings(1, temperature=2.0)[0] == 1.25  # clamped to [0.5, 1.25]
    assert _settings(2, temperature=0.5, top_k=10) == pytest.approx([0.675, 12, 1.0, 0.01], rel=1e-6)  # k 10 * 1.25
    assert _settings(2, top_k=0)[1] == 1024  # top-k 0 stays off (the original made it 5)
    assert _settings(2, top_k=2)[1] == 5  # at least 5 in this branch
    assert _settings(3, temperature=0.5, top_p=0.9)[2:] == pytest.approx([0.8, 0.01], rel=1e-6)
    temperature, top_k, top_p, min_p = _settings(4, temperature=0.5, top_k=100, top_p=0.5)
    assert temperature == pytest.approx(0.5 * (1 + 0.3 + 0.2 - 0.1)) and top_k == round(100 * (1 + 0.15 - 0.1))
    assert [top_p, min_p] == pytest.approx([0.5 * 1.05, 0.01], rel=1e-6)  # min-p 0.01 * (1 - 0.5), clamped to 0.01
    assert _settings(4, top_p=1.0)[2] == 1.0  # 1.05, kept in [0.1, 1]


def test_each_branch_scales_by_its_own_metrics():
    """Distinct metric values, so that a branch reading the wrong one shows: the module docstring's table."""
    metrics = {"entropy": 0.4, "varentropy": 0.2, "attention_entropy": 0.6, "attention_varentropy": 0.3,
               "agreement": 0.25, "interaction": 0.8}
    total, attention = 0.4 + 0.2, 0.6 + 0.3

    def settings(branch, **changed):
        warper = EntropixLogitsWarper(temperature=0.5, top_k=20, top_p=0.9, min_p=0.02)
        values = {name: torch.tensor([value]) for name, value in {**metrics, **changed}.items()}
        return [value.item() for value in warper._settings(torch.tensor([branch]), values, vocab=1024)]

    assert settings(1) == pytest.approx([0.5 * (1.3 + 0.2 * 0.6), 20, 0.9, 0.02], rel=1e-6)
    assert settings(2) == pytest.approx([0.5 * (1.2 + 0.3 * 0.8), math.floor(20 * (1 + 0.5 * 0.75)), 0.9, 0.02],
                                        rel=1e-6)
    assert settings(3) == pytest.approx([0.5 * (2.0 + 0.5 * 0.3), 20, 0.9 - 0.2 * 0.6, 0.02], rel=1e-6)
    assert settings(3, attention_entropy=3.0)[2] == pytest.approx(0.5)  # top-p at least 0.5 in this branch
    adaptive = [0.5 * (1 + 0.3 * total + 0.2 * attention - 0.2 * 0.25), round(20 * (1 + 0.3 * 0.8 - 0.2 * 0.25)),
                0.9 * (1 + 0.1 * 0.3), 0.01]
    assert settings(4) == pytest.approx(adaptive, rel=1e-6)


def test_the_filters_keep_the_most_likely_tokens():
    """min-p filters (the original dropped its mask) and top-p keeps the most likely tokens (the original's ascending
    order dropped them)."""
    logits = torch.tensor([[0.6, 0.3, 0.08, 0.02]]).log()
    one = torch.ones(1)

    def kept(top_k=4, top_p=1.0, min_p=0.0):
        log_probs = EntropixLogitsWarper._filtered(logits, one, torch.tensor([top_k]), one * top_p, one * min_p)
        torch.testing.assert_close(log_probs.logsumexp(-1), torch.zeros(1))
        return torch.isfinite(log_probs[0]).nonzero().flatten().tolist()

    assert kept() == [0, 1, 2, 3]
    assert kept(top_p=0.85) == [0, 1] and kept(top_p=0.1) == [0]
    assert kept(min_p=0.1) == [0, 1, 2] and kept(top_k=1) == [0]
    # the kept tokens are renormalised under the branch's temperature
    cold = EntropixLogitsWarper._filtered(logits, one * 0.5, torch.tensor([4]), one, one * 0.0)
    torch.testing.assert_close(cold, (logits / 0.5).log_softmax(-1))


def test_the_filters_keep_each_rows_most_likely_tokens_wherever_they_sit():
    """The filters rank a row's tokens by probability and keep those tokens where they are in the vocabulary: rows
    whose tokens are shuffled (each its own way) keep the shuffled places of what the sorted row keeps."""
    logits = torch.tensor([[0.6, 0.3, 0.08, 0.02]]).log()
    settings = torch.ones(2), torch.tensor([3, 3]), torch.full((2,), 0.85), torch.full((2,), 0.05)
    in_order = EntropixLogitsWarper._filtered(logits.expand(2, 4), *settings)
    assert torch.isfinite(in_order).sum(-1).tolist() == [2, 2]  # setup: the filters drop some tokens
    places = torch.stack([torch.randperm(4, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2)])
    assert not torch.equal(places[0], places[1]), "setup: the rows are shuffled differently"
    shuffled = torch.empty(2, 4).scatter(1, places, logits.expand(2, 4))
    expected = torch.empty(2, 4).scatter(1, places, in_order)
    torch.testing.assert_close(EntropixLogitsWarper._filtered(shuffled, *settings), expected)


def test_the_adaptive_branch_takes_the_most_likely_of_five_draws():
    log_probs = torch.tensor([[0.6, 0.4]]).log().expand(4000, 2)
    torch.manual_seed(0)
    first = (EntropixLogitsWarper._most_likely_draw(log_probs) == 0).float().mean().item()
    assert first > 0.95  # 1 - 0.4**5 = 0.99; a single draw would give 0.6


def test_the_warper_chooses_per_row_and_leaves_one_token_where_it_decides():
    warper = EntropixLogitsWarper(temperature=1.0)
    adaptive = [5.0, 4.0, 3.0] + [-math.inf] * 97  # 1.2 bits, 0.9 bits²: neither confident nor spread nor lost
    scores = torch.tensor([[20.0] + [0.0] * 99, [0.0] * 100, adaptive])  # confident; unsure; adaptive
    with probing_attention() as probe:
        probe.scores = {0: torch.zeros(3, 2, 5)}
        out = warper(None, scores)
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [0]
    torch.testing.assert_close(out[1], torch.full((100,), -math.log(100)))  # tempered uniform, nothing filtered
    assert int(torch.isfinite(out[2]).sum()) == 1 and int(out[2].argmax()) in (0, 1, 2)  # the chosen draw alone
    with pytest.raises(VallEValueError, match="entropix=True"):
        warper(None, scores)
    with probing_attention() as probe, pytest.raises(VallEValueError, match="1 rows for 3 rows"):
        probe.scores = {0: torch.zeros(1, 2, 5)}
        warper(None, scores)
    with probing_attention() as probe:  # the scores' own dtype comes back, as transformers' processors keep it
        probe.scores = {0: torch.zeros(3, 2, 5)}
        assert warper(None, scores.bfloat16()).dtype == torch.bfloat16
    with pytest.raises(VallEValueError, match="temperature > 0"):
        EntropixLogitsWarper(temperature=0.0)


def test_the_warpers_adaptive_rows_take_a_draw_not_the_most_likely_token():
    """Rows of the adaptive branch each keep the best of their own draws: mostly the most likely token, but not
    always (the argmax is the confident branch's choice)."""
    rows = 2000
    scores = torch.tensor([[5.0, 4.0, 3.0] + [-math.inf] * 97]).expand(rows, 100)  # 1.2 bits, 0.9 bits²
    warper = EntropixLogitsWarper(temperature=1.0)
    assert EntropixLogitsWarper._branches(entropix_metrics(scores, torch.zeros(rows, 2, 5))).unique().tolist() == [4]
    torch.manual_seed(0)
    with probing_attention() as probe:
        probe.scores = {0: torch.zeros(rows, 2, 5)}
        out = warper(None, scores)
    assert (torch.isfinite(out).sum(-1) == 1).all()
    chosen = out.argmax(-1)
    assert 0 < int((chosen != 0).sum()) < rows // 10, chosen.bincount()


def test_penalties_apply_before_entropix_and_greedy_stays_greedy():
    chain = build_sampler_processors(temperature=1.0, repetition_penalty=1.5, top_k=5, entropix=True)
    assert [type(processor).__name__ for processor in chain] == ["VallERepetitionPenaltyLogitsProcessor",
                                                                 "EntropixLogitsWarper"]
    greedy = build_sampler_processors(temperature=0.0, repetition_penalty=1.5, entropix=True)
    assert [type(processor).__name__ for processor in greedy] == ["VallERepetitionPenaltyLogitsProcessor"]


@pytest.mark.parametrize("setting, value", [("mirostat_tau", 3.0), ("min_temperature", 0.2), ("num_beams", 2)])
def test_samplers_that_would_fight_entropix_are_refused(tiny_model, setting, value):
    inputs = _generate_inputs(tiny_model)
    with pytest.raises(SettingError, match=f"{setting}=.*with entropix"):
        tiny_model.generate(**inputs, entropix=True, temperature=1.0, max_new_tokens=2, **{setting: value})


@torch.no_grad()
def test_generate_samples_with_entropix_and_needs_the_sdpa_attention(tiny_model):
    inputs = _generate_inputs(tiny_model)
    settings = dict(entropix=True, temperature=1.0, max_new_tokens=4, max_levels=0, output_audio=False,
                    return_dict_in_generate=True, output_scores=True, seeds=[1, 2])
    out = tiny_model.generate(**inputs, **settings)
    assert len(out.scores) == 4
    eager = copy.deepcopy(tiny_model)
    eager.set_attn_implementation("eager")
    with pytest.raises(VallEValueError, match="attn_implementation='sdpa'"):
        eager.generate(**inputs, **settings)


@torch.no_grad()
def test_with_layer_skip_entropix_reads_the_last_layer_a_row_ran():
    """Rows of one pass that exit at different layers: each reads the attention of the last layer it ran (later
    layers still run for the batch's other rows)."""
    from conftest import reactive_model, tiny_config

    from valle_hf.layer_skip import LayerSkip

    model = reactive_model(tiny_config(num_hidden_layers=4))
    inputs = _pass_inputs(model)

    def layers_run(threshold, rows=slice(None)):
        batch = {name: value[rows] if torch.is_tensor(value) else value for name, value in inputs.items()}
        return model(**batch, logits_to_keep=1, early_exit=LayerSkip(-1, threshold, 1e9)).exit_layers.tolist()

    flips = []
    for row in range(2):  # the entropy (bits) at which the row alone starts to exit after 3 layers
        low, high = 0.0, 11.0
        for _ in range(30):
            middle = (low + high) / 2
            low, high = (low, middle) if layers_run(middle, slice(row, row + 1)) == [3] else (middle, high)
        flips.append(high)
    threshold = sum(flips) / 2
    with probing_attention() as probe:
        model(**inputs, logits_to_keep=1, early_exit=LayerSkip(-1, threshold, 1e9))
        ran, scores = probe.layers_run.tolist(), dict(probe.scores)
        chosen = probe.last_layer_scores()
    assert sorted(ran) == [3, 4] and sorted(scores) == [0, 1, 2, 3], (flips, ran)
    for row, layers in enumerate(ran):
        torch.testing.assert_close(chosen[row], scores[layers - 1][row])


def test_streamed_with_layer_skip_it_samples_as_a_whole_run(tiny_model):
    """A streamed call runs NAR chunks between AR steps: entropix reads each AR step's own attention, not layers
    those chunks left behind."""
    from valle_hf.streaming import AudioStreamer

    class Chunks(AudioStreamer):
        def put(self, chunk):
            pass

    texts, prompts = _rows(tiny_model)
    settings = dict(input_ids=texts[0][None], prompt_codes=prompts[0][None], entropix=True, temperature=1.0,
                    layer_skip=True, layer_skip_exit_layer=0, max_new_tokens=20, seeds=[3], output_audio=False,
                    return_dict_in_generate=True)
    whole = tiny_model.generate(**settings)
    streamed = tiny_model.generate(**settings, audio_streamer=Chunks(4 / tiny_model.config.frame_rate))
    assert torch.equal(streamed.codes, whole.codes)
