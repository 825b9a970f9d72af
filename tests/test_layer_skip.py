"""Layer skip (entropy/varentropy early exit) inside the forward pass, with a consistent KV cache."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import original_generate_kwargs

from valle_hf.layer_skip import entropy_and_varentropy
from valle_hf.layout import tts_sequence


@pytest.fixture(scope="module")
def inputs(fixtures):
    case = fixtures.cases["tts_e2e_greedy"]
    return dict(input_ids=fixtures.case_tensor(case, "text")[None],
                prompt_codes=fixtures.case_tensor(case, "prom")[None], **original_generate_kwargs(case),
                output_audio=False, return_dict_in_generate=True)


def truncated(model, layers: int):
    """The same weights with only the first `layers` decoder layers."""
    short = copy.deepcopy(model)
    short.model.backbone.layers = short.model.backbone.layers[:layers]
    short.config.num_hidden_layers = short.model.backbone.config.num_hidden_layers = layers
    return short


def test_entropy_and_varentropy_in_bits():
    uniform, certain = torch.zeros(1, 8), torch.tensor([[0.0, -1e4, -1e4, -1e4]])
    entropy, varentropy = entropy_and_varentropy(torch.cat([uniform[:, :4], certain]))
    assert torch.allclose(entropy, torch.tensor([2.0, 0.0]), atol=1e-5)
    assert torch.allclose(varentropy, torch.tensor([0.0, 0.0]), atol=1e-5)
    two_level = torch.tensor([[math.log(3.0), 0.0]])  # p = (3/4, 1/4)
    entropy, varentropy = entropy_and_varentropy(two_level)
    surprisal = torch.tensor([math.log2(4 / 3), 2.0])
    mean = 0.75 * surprisal[0] + 0.25 * surprisal[1]
    assert torch.allclose(entropy, mean.reshape(1), atol=1e-5)
    variance = 0.75 * (surprisal[0] - mean) ** 2 + 0.25 * (surprisal[1] - mean) ** 2
    assert torch.allclose(varentropy, variance.reshape(1), atol=1e-5)


@pytest.mark.parametrize("at", ["entropy", "varentropy"])
@torch.no_grad()
def test_a_row_whose_metrics_equal_the_thresholds_exits(at):
    """"At or below the thresholds": a row exits where a metric equals its threshold, and not where the threshold is
    the next float32 below it. The head and norm are identities, so the layer's output is the logits."""
    from valle_hf.layer_skip import EarlyExit, LayerSkip

    logits = torch.tensor([[[math.log(3.0), 0.0, -1.0]]])  # [batch 1, 1 scored position, vocab 3]
    entropy, varentropy = (float(metric) for metric in entropy_and_varentropy(logits[0, -1:]))
    assert entropy > 0 and varentropy > 0  # setup: neither threshold is met by a zero
    for below, exits in ((False, True), (True, False)):
        thresholds = {"entropy": entropy, "varentropy": varentropy}
        if below:  # the next float32 below: the metrics are float32, and so is a threshold compared with them
            thresholds[at] = float(torch.tensor(thresholds[at]).nextafter(torch.tensor(-math.inf)))
        settings = LayerSkip(entropy_threshold=thresholds["entropy"], varentropy_threshold=thresholds["varentropy"],
                             min_layers=1)
        state = EarlyExit(settings, torch.nn.Identity(), torch.nn.Identity(), torch.ones(1, 1, dtype=torch.bool),
                          num_layers=2)
        state.update(0, torch.zeros_like(logits), logits)
        assert state.done.tolist() == [exits] and state.layers_run.tolist() == [1 if exits else 2], (at, below)


def test_a_threshold_that_never_fires_equals_plain_generation(fixture_model, inputs):
    plain = fixture_model.generate(**inputs)
    skipped = fixture_model.generate(**inputs, layer_skip=True, layer_skip_entropy_threshold=0.0)
    assert torch.equal(plain.codes, skipped.codes)
    layers = fixture_model.config.num_hidden_layers
    prefix = tts_sequence(fixture_model.config, inputs["input_ids"][0], 0, inputs["prompt_codes"].shape[1],
                          torch.zeros(0, dtype=torch.long))
    steps = skipped.sequences.shape[1] - len(prefix)  # one forward pass per generated token
    assert skipped.exit_layers.shape == (1, steps) and (skipped.exit_layers == layers).all()
    assert skipped.nar_exit_layers.shape == (1, fixture_model.config.num_rvq_levels - 1)
    assert (skipped.nar_exit_layers == layers).all()


@pytest.mark.parametrize("cache_implementation", [None, "static"])
def test_a_forced_exit_equals_a_truncated_model(cache_implementation):
    from conftest import greedy_settings, reactive_model, tiny_config

    model = reactive_model(tiny_config(num_hidden_layers=3))
    generator = torch.Generator().manual_seed(1)
    inputs = dict(input_ids=torch.randint(3, model.config.text_vocab_size, (1, 8), generator=generator),
                  prompt_codes=torch.randint(0, model.config.audio_vocab_size, (1, 12, 8), generator=generator),
                  **greedy_settings(max_new_tokens=10, min_new_tokens=10, max_levels=3))
    layers = 2
    forced = model.generate(**inputs, layer_skip=True, layer_skip_exit_layer=layers - 1,  # the index of the last
                            cache_implementation=cache_implementation)
    reference = truncated(model, layers).generate(**inputs, cache_implementation=cache_implementation)
    assert torch.equal(forced.codes, reference.codes)
    plain = model.generate(**inputs, cache_implementation=cache_implementation)
    assert not torch.equal(forced.codes, plain.codes)  # the third layer matters
    assert (forced.exit_layers == layers).all() and (forced.nar_exit_layers == layers).all()
    # the last layer's index runs every layer (the original's off-by-one ran one more than the flag said)
    last = model.generate(**inputs, layer_skip=True, layer_skip_exit_layer=2, layer_skip_entropy_threshold=0.0,
                          cache_implementation=cache_implementation)
    assert torch.equal(last.codes, plain.codes) and (last.exit_layers == 3).all()


def test_exits_at_the_first_allowed_layer_when_every_step_is_confident(fixture_model, inputs):
    out = fixture_model.generate(**inputs, layer_skip=True, layer_skip_entropy_threshold=1e9,
                                 layer_skip_varentropy_threshold=1e9)
    first = fixture_model.config.num_hidden_layers // 2 + 1  # the original: from layer index n // 2 on
    assert (out.exit_layers == first).all()
    assert torch.equal(out.codes, truncated(fixture_model, first).generate(**inputs).codes)


def test_a_call_traces_only_its_own_steps_while_another_runs(fixture_model, inputs):
    """Each call's trace was a hook on the shared model: a call run meanwhile (in another thread, here within the
    first call's first step) added its steps to it, or broke its stacking where the batch sizes differ."""
    settings = dict(inputs, layer_skip=True, layer_skip_entropy_threshold=1e9, layer_skip_varentropy_threshold=1e9)
    steps = dict(max_new_tokens=5, min_new_tokens=5)
    alone = fixture_model.generate(**{**settings, **steps}).exit_layers
    other = {key: value.repeat(2, *(1,) * (value.dim() - 1)) if torch.is_tensor(value) else value
             for key, value in settings.items()}  # a batch of two
    meanwhile = []

    def run_another(module, args, kwargs):
        if not meanwhile:
            meanwhile.append(None)
            meanwhile[0] = fixture_model.generate(**{**other, "max_new_tokens": 3, "min_new_tokens": 3}).exit_layers

    handle = fixture_model.register_forward_pre_hook(run_another, with_kwargs=True)
    try:
        traced = fixture_model.generate(**{**settings, **steps}).exit_layers
    finally:
        handle.remove()
    assert torch.equal(traced, alone) and meanwhile[0].shape == (2, 3)


def test_stt_and_bad_exit_layer(fixture_model, fixtures):
    case = fixtures.cases["stt_e2e_greedy"]
    audio = fixtures.case_tensor(case, "resp")[None]
    out = fixture_model.generate(audio_codes=audio, task="stt", temperature=0.0, max_new_tokens=5, min_new_tokens=5,
                                 layer_skip=True, layer_skip_exit_layer=0, return_dict_in_generate=True)
    assert out.exit_layers.shape == (1, 5) and (out.exit_layers == 1).all()  # five steps (the stop suppressed)
    layers = fixture_model.config.num_hidden_layers
    with pytest.raises(ValueError, match=f"layer_skip_exit_layer={layers} .*0..{layers - 1}"):
        fixture_model.generate(audio_codes=audio, task="stt", max_new_tokens=2, layer_skip=True,
                               layer_skip_exit_layer=layers)
    with pytest.raises(ValueError, match="layer_skip_exit_layer"):
        fixture_model.generate(audio_codes=audio, task="stt", max_new_tokens=2, layer_skip=True,
                               layer_skip_exit_layer=99)


def test_the_exit_layer_is_a_layer_index_or_minus_one(fixture_model, inputs):
    """`LayerSkip` given to a forward pass directly (generate's settings check never sees it): -1 runs every layer,
    an index runs up to and including that layer, anything else is refused naming the range."""
    from valle_hf.errors import VallEValueError
    from valle_hf.layer_skip import LayerSkip

    layers = fixture_model.config.num_hidden_layers
    assert [LayerSkip(index).layer_limit(layers) for index in (-1, 0, layers - 1)] == [layers, 1, layers]
    ids = tts_sequence(fixture_model.config, inputs["input_ids"][0], 0, inputs["prompt_codes"].shape[1])[None]
    for index in (layers, -2):
        with pytest.raises(VallEValueError, match=f"0..{layers - 1} or -1, got {index}"):
            fixture_model(input_ids=ids, prompt_codes=inputs["prompt_codes"], early_exit=LayerSkip(index))


def _rows_metrics(model, batch: dict, scored: torch.BoolTensor) -> torch.Tensor:
    """`[B, layers]`: each row's mean entropy (bits) over its `scored` positions (`[B, L]`) after each layer, from
    a pass that runs every layer."""
    backbone, head = model.model.backbone, model.classifiers[batch["level"]]
    seen = []
    handles = [layer.register_forward_hook(lambda module, args, out: seen.append(
        entropy_and_varentropy(head(backbone.norm(out)))[0])) for layer in backbone.layers]
    try:
        model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([torch.where(scored, entropy, 0.0).sum(1) / scored.sum(1) for entropy in seen], dim=1)



@torch.no_grad()
def test_a_row_with_nothing_to_sample_exits_at_the_first_check_and_holds_no_row_back():
    """A NAR row of no frames (its AR stopped at once) beside a row that has some: its metric is 0 over no
    positions, not 0/0 (NaN, never within a threshold), so it exits at the first check and the batch skips the layers
    after once the other row exits too. The head and norm are identities, so the layer's output is the logits."""
    from valle_hf.layer_skip import EarlyExit, LayerSkip

    confident, uncertain = [0.0, -1e4, -1e4], [0.0, 0.0, 0.0]
    logits = torch.tensor([[confident], [uncertain]])  # [batch 2, 1 position, vocab 3]
    scored = torch.tensor([[True], [False]])  # the second row samples nothing
    state = EarlyExit(LayerSkip(min_layers=1), torch.nn.Identity(), torch.nn.Identity(), scored, num_layers=3)
    state.update(0, torch.zeros_like(logits), logits)
    assert state.done.tolist() == [True, True] and state.layers_run.tolist() == [1, 1] and state.skips(1)

@pytest.mark.parametrize("level", [0, 1])
@torch.no_grad()
def test_each_row_exits_after_the_first_checked_layer_whose_metric_is_within_the_threshold(level):
    """For thresholds between every pair of the rows' metrics, and first checks after one or two layers
    (`min_layers`): a row exits after the first checked layer (not the last) where the mean entropy over the
    positions it samples (its last one, or at a NAR level its own response frames) is at or below the threshold, and
    keeps that exit layer while the batch's other rows run on."""
    from conftest import reactive_model, tiny_config

    from valle_hf.layer_skip import LayerSkip
    from valle_hf.layout import pad

    model = reactive_model(tiny_config(num_hidden_layers=4))
    config, layers = model.config, 4
    generator = torch.Generator().manual_seed(2)
    rows = [(torch.randint(3, config.text_vocab_size, (text,), generator=generator),
             torch.randint(0, config.audio_vocab_size, (prompt, config.num_rvq_levels), generator=generator),
             torch.randint(0, config.audio_vocab_size, (frames * level, 1), generator=generator))
            for text, prompt, frames in ((9, 16, 12), (5, 11, 4))]
    ids, mask = pad([tts_sequence(config, text, level, len(prompt), response_frames=len(codes))
                     for text, prompt, codes in rows], config.pad_token_id)
    batch = dict(input_ids=ids, attention_mask=mask, prompt_codes=pad([p for _, p, _ in rows], 0, side="right")[0],
                 level=level)
    if level:
        batch["audio_codes"] = pad([codes for _, _, codes in rows], 0, side="right")[0]
        scored = ids == config.audio_frame_token_id
    else:
        scored = torch.zeros_like(ids, dtype=torch.bool)
        scored[:, -1] = True
    metrics = _rows_metrics(model, batch, scored)
    keep = int(scored.sum(1).max())
    staggered = False
    for min_layers in (1, 2):
        values = metrics[:, min_layers - 1 : layers - 1].flatten().sort().values
        for threshold in torch.cat([values[:1] - 1, (values[1:] + values[:-1]) / 2, values[-1:] + 1]).tolist():
            exits = model(**batch, logits_to_keep=keep,
                          early_exit=LayerSkip(-1, threshold, 1e9, min_layers=min_layers)).exit_layers.tolist()
            expected = [next((count for count in range(min_layers, layers) if metrics[row, count - 1] <= threshold),
                             layers) for row in range(len(rows))]
            assert exits == expected, (min_layers, threshold)
            staggered |= min(exits) < max(exits) and min(exits) < layers - 1
    assert staggered, "setup: a row should exit while another row runs on through a later check"


@torch.no_grad()
def test_a_nar_row_exits_alike_alone_and_in_a_batch():
    """The NAR's metric of a row reads that row's response frames only, so rows of different lengths exit where they
    would alone (reading the batch's longest response would mix in another row's text and prompt)."""
    from conftest import reactive_model, tiny_config

    from valle_hf.layer_skip import LayerSkip
    from valle_hf.layout import pad

    model = reactive_model(tiny_config(num_hidden_layers=4))
    config = model.config
    generator = torch.Generator().manual_seed(5)
    rows = [(torch.randint(3, config.text_vocab_size, (text,), generator=generator),
             torch.randint(0, config.audio_vocab_size, (prompt, config.num_rvq_levels), generator=generator),
             torch.randint(0, config.audio_vocab_size, (frames, 1), generator=generator))
            for text, prompt, frames in ((9, 16, 12), (5, 11, 4))]

    def exits(batch, threshold):
        ids, mask = pad([tts_sequence(config, text, 1, len(prompt), response_frames=len(codes))
                         for text, prompt, codes in batch], config.pad_token_id)
        frames = max(len(codes) for _, _, codes in batch)
        return model(input_ids=ids, attention_mask=mask, prompt_codes=pad([p for _, p, _ in batch], 0, side="right")[0],
                     audio_codes=pad([c for _, _, c in batch], 0, side="right")[0], level=1, logits_to_keep=frames,
                     early_exit=LayerSkip(-1, threshold, 1e9)).exit_layers.tolist()

    for index, row in enumerate(rows):
        low, high = 0.0, 11.0  # entropies in bits of 1,024 classes: below 10
        for _ in range(30):  # the threshold at which the row alone starts to exit: its own metric
            middle = (low + high) / 2
            low, high = (low, middle) if exits([row], middle)[0] < 4 else (middle, high)
        for threshold in (high - 1e-3, high + 1e-3):  # just either side of it
            assert exits(rows, threshold)[index] == exits([row], threshold)[0], (index, threshold)
        assert exits([row], high - 1e-3) != exits([row], high + 1e-3)


# ---------------------------------------------------------------------------------------------------- varying exits
@torch.no_grad()
def replay(model, sequence: torch.LongTensor, prompt: torch.LongTensor, exits: torch.LongTensor):
    """The level-0 logits of the last position of `sequence` and its (entropy, varentropy) after each layer, with
    every position's layers cut at its own exit (`exits`, one per position), without a cache.

    A position that exited after `e` layers keeps its hidden state from there on, and every deeper layer reads its
    keys and values from that state: the rule `_fill_cache` implements for the skipped layers of a cached step.
    """
    from transformers.masking_utils import create_causal_mask

    from valle_hf.cache import CACHE_KWARG
    from valle_hf.layout import segment_position_ids

    backbone, head = model.model.backbone, model.classifiers[0]
    ids = sequence[None]
    hidden = model.model.embeddings.embed_pass(ids, 0, "tts", prompt[None], None)
    positions = segment_position_ids(ids, model.config)
    mask = create_causal_mask(config=backbone.config, inputs_embeds=hidden, attention_mask=torch.ones_like(ids),
                              position_ids=positions, **{CACHE_KWARG: None})
    embeddings = backbone.rotary_emb(hidden, position_ids=positions)
    metrics = []
    for index, layer in enumerate(backbone.layers):
        out = layer(hidden, attention_mask=mask, position_embeddings=embeddings, position_ids=positions)
        hidden = torch.where((exits > index)[None, :, None], out, hidden)
        metrics.append(entropy_and_varentropy(head(backbone.norm(hidden[0, -1]))))
    return head(backbone.norm(hidden[0, -1])), metrics


def test_exits_that_vary_between_steps_keep_the_cache_consistent():
    """Thresholds that make the exit change from step to step; every step's logits equal a no-cache pass that replays
    the recorded exits (so the skipped layers' keys and values must have been filled from the exit state), and every
    exit is where the entropy rule puts it."""
    from conftest import greedy_settings, reactive_model, tiny_config

    from valle_hf.layout import pad

    model = reactive_model(tiny_config(num_hidden_layers=4))
    config, layers = model.config, 4
    first_check = layers // 2 + 1  # exits are considered after n // 2 + 1 layers, as in the original
    generator = torch.Generator().manual_seed(0)
    texts = [torch.randint(3, config.text_vocab_size, (n,), generator=generator) for n in (9, 5)]
    prompts = [torch.randint(0, config.audio_vocab_size, (n, config.num_rvq_levels), generator=generator)
               for n in (16, 11)]
    ids, mask = pad(texts, 0, side="right")
    codes, codes_mask = pad(prompts, 0, side="right")
    inputs = dict(input_ids=ids, attention_mask=mask, prompt_codes=codes, prompt_attention_mask=codes_mask)
    steps = 16
    settings = greedy_settings(max_new_tokens=steps, min_new_tokens=steps, output_logits=True)

    # thresholds at the median entropy of the checked layers on a plain run: some steps exit early, some do not
    seen = []
    handles = [layer.register_forward_hook(lambda module, args, out: seen.append(
        entropy_and_varentropy(model.classifiers[0](model.model.backbone.norm(out[:, -1]))))) for layer in
        model.model.backbone.layers[first_check - 1 : layers - 1]]
    try:
        model.generate(**inputs, **settings)
    finally:
        for handle in handles:
            handle.remove()
    entropy = torch.cat([metric[0] for metric in seen]).median().item()
    varentropy = torch.cat([metric[1] for metric in seen]).max().item() + 1.0  # the entropy decides
    out = model.generate(**inputs, **settings, layer_skip=True, layer_skip_entropy_threshold=entropy,
                         layer_skip_varentropy_threshold=varentropy)
    assert out.exit_layers.shape == (2, steps)

    for row, (text, prompt) in enumerate(zip(texts, prompts, strict=True)):
        exits = out.exit_layers[row]
        assert len(set(exits[1:].tolist())) > 1, "setup: the exits of the cached steps should vary"
        filled_then_read = any(exits[t] < layers and exits[t + 1 :].max() > exits[t] for t in range(steps - 1))
        assert filled_then_read, "setup: a later step should read the keys and values a skipped layer got"
        prefix = tts_sequence(config, text, 0, len(prompt), torch.zeros(0, dtype=torch.long))
        generated = out.sequences[row, -steps:]
        for step in range(steps):
            sequence = torch.cat([prefix, generated[:step]])
            per_position = torch.cat([exits[:1].expand(len(prefix)), exits[1 : step + 1]])
            logits, metrics = replay(model, sequence, prompt, per_position)
            torch.testing.assert_close(out.logits[step][row], logits, rtol=1e-4, atol=1e-4)
            assert int(generated[step]) == int(logits.argmax())
            below = [count for count in range(first_check, layers) if metrics[count - 1][0] <= entropy
                     and metrics[count - 1][1] <= varentropy]
            assert int(exits[step]) == (below[0] if below else layers), (row, step)


@torch.no_grad()
def test_a_level_given_as_a_tensor_scores_the_same_positions():
    """`level` may be an int or a 0-dim tensor: a level-0 pass scores its last position either way (a tensor 0 was
    taken for a NAR pass, which scores no position, so every row exited at the first check)."""
    from conftest import reactive_model, tiny_config

    from valle_hf.layer_skip import LayerSkip

    model = reactive_model(tiny_config(num_hidden_layers=4))
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, model.config.text_vocab_size, (8,), generator=generator)
    prompt = torch.randint(0, model.config.audio_vocab_size, (1, 12, model.config.num_rvq_levels), generator=generator)
    ids = tts_sequence(model.config, text, 0, prompt.shape[1])[None]
    skip = LayerSkip(-1, 1e-4, 1e9)  # no real distribution is that certain: no exit before the last layer
    exits = [model(input_ids=ids, prompt_codes=prompt, level=level, early_exit=skip, logits_to_keep=1).exit_layers
             for level in (0, torch.tensor(0))]
    assert exits[0].tolist() == exits[1].tolist() == [4]
