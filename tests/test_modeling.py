"""Forward-pass parity with the original (fixture cases), layouts, position ids, save/load, Auto classes."""

from __future__ import annotations

import pytest
import torch

from valle_hf.layout import segment_position_ids, stt_sequence, tts_sequence
from valle_hf.modeling import VallEForConditionalGeneration

TOLERANCE = 1e-4


def case_inputs(fixtures, model, case):
    """The unified-id sequence and codes of one forward case, rebuilt from the case's stored inputs."""
    config = model.config
    text = fixtures.case_tensor(case, "text")
    resp = fixtures.case_tensor(case, "resp")
    if case["kind"] == "stt_step":
        return stt_sequence(config, len(resp), text), dict(audio_codes=resp[None], task="stt", level=0)
    prompt = fixtures.case_tensor(case, "prom")
    level = case["quant_level"]
    if case["kind"] == "ar_step":
        response = torch.zeros(0, dtype=torch.long) if resp is None else resp[:, 0]
        return tts_sequence(config, text, 0, len(prompt), response), dict(prompt_codes=prompt[None], level=0)
    levels = case["resp_levels_given"]
    ids = tts_sequence(config, text, level, len(prompt), response_frames=len(resp))
    return ids, dict(prompt_codes=prompt[None], audio_codes=resp[None, :, : len(levels)], level=level)


def forward_cases(fixtures):
    return [case for case in fixtures.meta["cases"] if case["kind"] in ("ar_step", "nar_step", "stt_step")]


def test_fixture_has_forward_cases(fixtures):
    kinds = {case["kind"] for case in forward_cases(fixtures)}
    assert kinds == {"ar_step", "nar_step", "stt_step"}


def test_forward_matches_original(fixtures, fixture_model):
    """Every stored forward case: position ids, inputs_embeds, hidden states, logits and greedy tokens."""
    for case in forward_cases(fixtures):
        ids, kwargs = case_inputs(fixtures, fixture_model, case)
        ids = ids[None]
        name = case["name"]
        expected_positions = fixtures.case_tensor(case, "position_ids")
        assert torch.equal(segment_position_ids(ids, fixture_model.config)[0], expected_positions), name
        embed_kwargs = {key: kwargs.get(key) for key in ("prompt_codes", "audio_codes")}
        embeds = fixture_model.model.embeddings.embed_pass(ids, kwargs["level"], kwargs.get("task", "tts"),
                                                          embed_kwargs["prompt_codes"], embed_kwargs["audio_codes"])[0]
        if (expected := fixtures.case_tensor(case, "inputs_embeds")) is not None:
            assert (embeds - expected).abs().max() <= TOLERANCE, f"{name}: inputs_embeds differ"
        with torch.no_grad():
            hidden = fixture_model.model(input_ids=ids, **kwargs).last_hidden_state[0]
            logits = fixture_model(input_ids=ids, **kwargs).logits[0]
        if (expected := fixtures.case_tensor(case, "last_hidden_state")) is not None:
            assert (hidden - expected).abs().max() <= TOLERANCE, f"{name}: backbone output differs"
        if (expected := fixtures.case_tensor(case, "logits_full")) is not None:
            assert (logits - expected).abs().max() <= TOLERANCE, f"{name}: full logits differ"
        sampled = fixtures.case_tensor(case, "logits_sampled")
        rows = logits[-len(sampled):]
        assert rows.shape == sampled.shape, name
        assert (rows - sampled).abs().max() <= TOLERANCE, f"{name}: sampled logits differ"
        greedy = fixtures.case_tensor(case, "greedy_token")
        if greedy is None:
            greedy = fixtures.case_tensor(case, "greedy_tokens")
        assert torch.equal(rows.argmax(-1), greedy), f"{name}: greedy tokens differ"


def test_padding_and_batching_do_not_change_logits(fixtures, fixture_model):
    """Left-padded rows of different lengths give the logits each sequence gives alone."""
    case = next(case for case in forward_cases(fixtures) if case["kind"] == "ar_step" and "resp" in case["tensors"])
    ids, kwargs = case_inputs(fixtures, fixture_model, case)
    short = ids[: len(ids) - 5]  # the same prefix with a shorter response
    from valle_hf.layout import pad

    batch, mask = pad([ids, short], fixture_model.config.pad_token_id)
    prompt = kwargs["prompt_codes"].expand(2, -1, -1)
    with torch.no_grad():
        together = fixture_model(input_ids=batch, attention_mask=mask, prompt_codes=prompt).logits
        alone = fixture_model(input_ids=short[None], prompt_codes=kwargs["prompt_codes"]).logits
    assert (together[1, -len(short):] - alone[0]).abs().max() <= TOLERANCE


def test_position_ids_restart_per_segment(tiny_model):
    config = tiny_model.config
    text = torch.tensor([1, 5, 2])
    ids = tts_sequence(config, text, 0, 4, torch.tensor([7, 8]))
    # text 0..2 + SEP 3, level 0 + SEP 1, prompt 0..3 + SEP 4, response 0..1
    assert segment_position_ids(ids[None], config)[0].tolist() == [0, 1, 2, 3, 0, 1, 0, 1, 2, 3, 4, 0, 1]
    stt = stt_sequence(config, 3, torch.tensor([1, 9]))
    assert segment_position_ids(stt[None], config)[0].tolist() == [0, 1, 2, 0, 1, 0, 1, 2]


def test_save_and_reload_give_identical_logits(tmp_path, fixtures, fixture_model):
    from transformers import AutoConfig, AutoModelForTextToWaveform

    import valle_hf  # noqa: F401  (registers the Auto classes)

    case = forward_cases(fixtures)[0]
    ids, kwargs = case_inputs(fixtures, fixture_model, case)
    fixture_model.save_pretrained(tmp_path)
    for loader in (VallEForConditionalGeneration, AutoModelForTextToWaveform):
        reloaded = loader.from_pretrained(tmp_path).eval()
        assert isinstance(reloaded, VallEForConditionalGeneration)
        with torch.no_grad():
            assert torch.equal(reloaded(input_ids=ids[None], **kwargs).logits,
                               fixture_model(input_ids=ids[None], **kwargs).logits)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "valle"


def test_tiny_random_model_builds_and_runs(tiny_model):
    config = tiny_model.config
    ids = tts_sequence(config, torch.tensor([1, 3, 2]), 2, 5, response_frames=4)[None]
    prompt = torch.randint(0, config.audio_vocab_size, (1, 5, config.num_rvq_levels))
    audio = torch.randint(0, config.audio_vocab_size, (1, 4, 2))
    logits = tiny_model(input_ids=ids, prompt_codes=prompt, audio_codes=audio, level=2).logits
    assert logits.shape == (1, ids.shape[1], config.audio_vocab_size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=30, num_attention_heads=4), "divisible"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(capabilities=["ar", "nar", "len"]), "capabilities"),
        (dict(split_classifiers=False), "split_classifiers"),
        (dict(version=4), "version"),
    ],
)
def test_config_rejects_unsupported_values(overrides, message):
    from valle_hf.configuration import VallEConfig

    with pytest.raises(ValueError, match=message):
        VallEConfig(**overrides)


def test_forward_rejects_bad_arguments(tiny_model):
    ids = tts_sequence(tiny_model.config, torch.tensor([1, 2]), 0, 3, torch.zeros(0, dtype=torch.long))[None]
    with pytest.raises(ValueError, match="task"):
        tiny_model(input_ids=ids, task="asr")
    with pytest.raises(ValueError, match="level"):
        tiny_model(input_ids=ids, level=9)
    with pytest.raises(ValueError, match="placeholders"):
        tiny_model(input_ids=ids, prompt_codes=torch.zeros(1, 2, 8, dtype=torch.long))


def test_return_dict_false_gives_the_output_as_a_tuple(tiny_model):
    from valle_hf.training import build_training_sequence, collate_sequences

    config = tiny_model.config
    codes = torch.randint(0, config.audio_vocab_size, (6, config.num_rvq_levels), generator=torch.Generator())
    sequences = [build_training_sequence(config, torch.tensor([1, 5, 6, 2]), codes, level) for level in (0, 3)]
    batch = collate_sequences(config, sequences)
    output = tiny_model(**batch)
    as_tuple = tiny_model(**batch, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(output.to_tuple())
    assert all(torch.equal(a, b) for a, b in zip(as_tuple, output.to_tuple(), strict=True) if torch.is_tensor(a))
    hidden = tiny_model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              level=batch["level"], task=batch["task"], audio_codes=batch["audio_codes"],
                              return_dict=False)
    assert isinstance(hidden, tuple) and hidden[0].shape[:2] == batch["input_ids"].shape


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_attention_implementation_is_the_backbones_and_the_codec_keeps_its_own(converted_dir, fixtures,
                                                                               fixture_model, implementation):
    model = VallEForConditionalGeneration.from_pretrained(converted_dir, attn_implementation=implementation)
    assert model.model.backbone.config._attn_implementation == implementation
    assert model.codec_model.config._attn_implementation == "eager"  # EnCodec has no attention: it keeps its own
    case = forward_cases(fixtures)[0]
    ids, kwargs = case_inputs(fixtures, model, case)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids[None], **kwargs).logits,
                                   fixture_model(input_ids=ids[None], **kwargs).logits, atol=TOLERANCE, rtol=0)
    other = "sdpa" if implementation == "eager" else "eager"
    model.set_attn_implementation(other)  # switching at run time follows the same rule
    assert model.model.backbone.config._attn_implementation == other
    assert model.codec_model.config._attn_implementation == "eager"
