"""Training: loss parity with the original (fixture loss cases), collator, padding, overfit, LoRA, scripts."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    GROUP_AT_EXIT,
    PLAIN_SETTINGS,
    REPO,
    accelerate_launch,
    load_script,
    logged_warnings,
    reactive_model,
    subprocess_environment,
    tiny_config,
)

from valle_hf.conversion import key_map
from valle_hf.dataset import MANIFEST, append_manifest, save_utterance
from valle_hf.errors import VallEValueError
from valle_hf.loss import IGNORE_INDEX, shift_targets
from valle_hf.modeling import VallEForConditionalGeneration
from valle_hf.training import (
    LORA_TARGET_MODULES,
    VallEDataCollator,
    add_lora,
    build_training_sequence,
    collate_sequences,
    level_pool,
    sample_levels,
)

LOSS_TOLERANCE = 1e-5
TOKEN_LOSS_TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------------------- loss parity


def case_sequences(config, tensors, name, case):
    """The case's items as training sequences, from the stored inputs and forced levels."""
    sequences = []
    for index, item in enumerate(case["items"]):
        text, resp, prom = (tensors.get(f"{name}/item{index}/{key}") for key in ("text", "resp", "prom"))
        sequences.append(build_training_sequence(config, text, resp, item["forced_rvq_level"], item["task"], prom))
    return sequences


def scored_rows(sequence, tensor_row, mask_row):
    """An item's per-row values without padding, cut to the rows the original scores (L - 1 when it shifts)."""
    rows = tensor_row[mask_row.bool()]
    return rows[: len(rows) - 1] if sequence.level == 0 else rows


@pytest.fixture(scope="module")
def loss_cases(fixtures):
    meta, tensors = fixtures.loss_cases()
    assert meta["cases"], "the fixture set has no loss cases"
    return meta, tensors


def test_loss_matches_original(loss_cases, fixture_model):
    """Every loss case: batch loss and item losses within 1e-5, per-token losses within 1e-4, same targets."""
    meta, tensors = loss_cases
    config = fixture_model.config
    for name, case in meta["cases"].items():
        sequences = case_sequences(config, tensors, name, case)
        for side in ("right", "left") if len(sequences) > 1 else ("right",):
            batch = collate_sequences(config, sequences, side)
            with torch.no_grad():
                output = fixture_model(**batch)
            assert abs(float(output.loss) - case["nll"]) <= LOSS_TOLERANCE, (name, side, float(output.loss))
            targets = shift_targets(batch["labels"], batch["level"] == 0, batch["attention_mask"])
            for index, (sequence, item) in enumerate(zip(sequences, case["items"], strict=True)):
                where = f"{name}/item{index} ({side} padding)"
                assert len(sequence.input_ids) == item["seq_len"], where
                assert abs(float(output.item_losses[index]) - item["item_loss"]) <= LOSS_TOLERANCE, where
                mask = batch["attention_mask"][index]
                expected_targets = tensors[f"{name}/item{index}/targets"]
                assert torch.equal(scored_rows(sequence, targets[index], mask), expected_targets), where
                segments = sequence.segments[1:] if sequence.level == 0 else sequence.segments
                assert torch.equal(segments, tensors[f"{name}/item{index}/segment"]), where
                token_loss = scored_rows(sequence, output.token_losses[index], mask)
                expected = tensors[f"{name}/item{index}/token_loss"]
                assert (token_loss - expected).abs().max() <= TOKEN_LOSS_TOLERANCE, where
                assert int((expected_targets != IGNORE_INDEX).sum()) == item["n_loss_tokens"], where


def test_gradients_reach_what_the_original_trains(loss_cases, fixture_model):
    """Backward of each case's loss: the same parameters get a gradient (and the same total norm) as the original."""
    meta, tensors = loss_cases
    config = fixture_model.config
    ours_to_original = {ours: original for original, ours in key_map(config).items()}
    try:
        for name, case in meta["cases"].items():
            if "params_without_grad" not in case:
                continue
            fixture_model.zero_grad(set_to_none=True)
            fixture_model(**collate_sequences(config, case_sequences(config, tensors, name, case))).loss.backward()
            with_grad = {ours_to_original[n] for n, p in fixture_model.named_parameters()
                         if p.grad is not None and n in ours_to_original}
            expected = set(ours_to_original.values()) - set(case["params_without_grad"])
            assert with_grad == expected, (name, sorted(with_grad ^ expected))
            if "grad_total_norm" in case:
                norm = torch.linalg.vector_norm(torch.stack([
                    p.grad.norm() for p in fixture_model.parameters() if p.grad is not None]))
                assert math.isclose(float(norm), case["grad_total_norm"], rel_tol=1e-4), name
    finally:
        fixture_model.zero_grad(set_to_none=True)


def test_level_distribution_is_the_originals(loss_cases, fixture_model):
    meta, _ = loss_cases
    levels = fixture_model.config.num_rvq_levels
    for case in meta["cases"].values():
        if "rvq_levels_p_seen_by_random_choice" in case:
            assert level_pool(levels) == case["rvq_levels_p_seen_by_random_choice"]
    draws = sample_levels(36_000, torch.Generator().manual_seed(0), levels)
    assert torch.equal(draws, sample_levels(36_000, torch.Generator().manual_seed(0), levels))
    frequencies = torch.bincount(draws, minlength=levels).float() / len(draws)
    expected = torch.tensor([(levels - k) / (levels * (levels + 1) / 2) for k in range(levels)])
    assert (frequencies - expected).abs().max() < 0.01


# ---------------------------------------------------------------------------------------------------- batching


def random_item(generator, text_length, frames, prompt_frames=None, **extra):
    item = {
        "input_ids": torch.cat([torch.tensor([1]), torch.randint(3, 256, (text_length,), generator=generator),
                               torch.tensor([2])]),
        "audio_codes": torch.randint(0, 1024, (frames, 8), generator=generator),
    }
    if prompt_frames is not None:
        item["prompt_codes"] = torch.randint(0, 1024, (prompt_frames, 8), generator=generator)
    return {**item, **extra}


def test_padding_never_changes_an_item_loss(tiny_model):
    """AR, NAR (with and without prompt) and STT items of different lengths: batched = alone, either padding side.
    The short AR item, padded on the left, must keep its first target unscored (the padding row before it would
    predict it)."""
    generator = torch.Generator().manual_seed(0)
    items = [random_item(generator, 7, 9, 4, level=0), random_item(generator, 3, 5, 6, level=3),
             random_item(generator, 5, 11, task="stt"), random_item(generator, 4, 6, None, level=7),
             random_item(generator, 6, 4, 3, level=1), random_item(generator, 2, 3, 2, level=0)]
    collator = VallEDataCollator(tiny_model.config)
    with torch.no_grad():
        alone = torch.stack([tiny_model(**collator([item])).loss for item in items])
        for side in ("right", "left"):
            batch = VallEDataCollator(tiny_model.config, padding_side=side)(items)
            output = tiny_model(**batch)
            assert (output.item_losses - alone).abs().max() <= LOSS_TOLERANCE, side
            assert abs(float(output.loss) - float(alone.mean())) <= LOSS_TOLERANCE, side


def test_labels_of_a_pass_over_a_cached_prefix_score_as_in_one_pass(tiny_model):
    """A pass over the last positions, its prefix in the cache: `attention_mask` covers prefix and pass, labels the
    pass alone, and a left-padded row's tokens are scored as in one pass over the whole sequence (the mask's padding
    is in the prefix, not in the pass)."""
    from valle_hf.layout import segment_position_ids

    generator = torch.Generator().manual_seed(0)
    items = [random_item(generator, 7, 9, 4, level=0), random_item(generator, 2, 3, 2, level=0)]
    batch = VallEDataCollator(tiny_model.config, padding_side="left")(items)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    # from the first column where every row holds response tokens (audio codes and the stop token): no placeholder
    # in the pass reads the prompt codes
    response = ids <= tiny_model.config.stop_token_id
    start = int(max(row.nonzero()[0] for row in response))
    assert bool(response[:, start:].all()) and bool((mask[:, :start] == 0).any())
    with torch.no_grad():
        whole = tiny_model(**batch)
        prefix = tiny_model(**{**batch, "input_ids": ids[:, :start], "attention_mask": mask[:, :start],
                               "labels": None}, use_cache=True)
        tail = tiny_model(input_ids=ids[:, start:], attention_mask=mask, cache=prefix.past_key_values,
                          position_ids=segment_position_ids(ids, tiny_model.config)[:, start:], level=batch["level"],
                          labels=batch["labels"][:, start:])
    assert bool((tail.token_losses > 0).any(dim=1).all())
    torch.testing.assert_close(tail.token_losses, whole.token_losses[:, start:], rtol=1e-4, atol=1e-4)


def test_the_loss_averages_the_items_it_scores_and_refuses_labels_it_cannot_read(tiny_model):
    """A row whose labels are all -100 has no loss: it counted as 0 and halved a batch of two. Labels of another
    shape, dtype or range failed inside torch's cross-entropy."""
    from valle_hf.errors import VallEValueError

    generator = torch.Generator().manual_seed(0)
    batch = VallEDataCollator(tiny_model.config)([random_item(generator, 5, 7, 4, level=0),
                                                  random_item(generator, 5, 7, 4, level=2)])
    with torch.no_grad():
        both = tiny_model(**batch)
        unscored = tiny_model(**{**batch, "labels": batch["labels"].index_fill(0, torch.tensor([1]), -100)})
        nothing = tiny_model(**{**batch, "labels": torch.full_like(batch["labels"], -100)})
    assert abs(float(unscored.loss) - float(both.item_losses[0])) <= LOSS_TOLERANCE
    with torch.no_grad():  # any integer dtype is read as the ids it holds
        assert torch.equal(tiny_model(**{**batch, "labels": batch["labels"].int()}).loss, both.loss)
    assert float(nothing.loss) == 0.0
    labels = batch["labels"]
    width = both.logits.shape[-1]  # the widest head's classes: the first id past them is refused too
    for wrong, message in ((labels[:, :-2], r"labels must have the shape of input_ids, \(2, \d+\), got \(2, \d+\)"),
                           (labels.float(), "labels must be integer ids, got dtype torch.float32"),
                           (labels.masked_fill(labels >= 0, 5022), r"labels must be ids in 0\.\.\d+ or -100 .*5022"),
                           (labels.masked_fill(labels >= 0, width), rf"labels must be ids in 0\.\.{width - 1} or "
                                                                    rf"-100 \(not scored\), got {width}$"),
                           (labels.masked_fill(labels >= 0, -3), "got -3")):
        with pytest.raises(VallEValueError, match=message):
            tiny_model(**{**batch, "labels": wrong})


def test_the_loss_of_half_precision_logits_is_computed_in_float32():
    """The original's cross-entropy runs in float32 under autocast: bfloat16 logits (a bf16 fine-tune) score as their
    float32 values do, not rounded to bfloat16 on the way."""
    from valle_hf.loss import valle_loss

    generator = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(2, 6, 11, generator=generator)).bfloat16()
    labels = torch.randint(0, 11, (2, 6), generator=generator)
    shift = torch.tensor([True, False])
    half, full = valle_loss(logits, labels, shift), valle_loss(logits.float(), labels, shift)
    for ours, reference in zip(half[:3], full[:3], strict=True):
        assert ours.dtype == torch.float32 and torch.equal(ours, reference)


def test_per_row_levels_given_as_a_list_or_array_score_as_a_tensor_and_non_integers_are_refused(tiny_model):
    """A list of levels was a TypeError deep inside the embedding, and a float or bool level was read as int(level)."""
    from valle_hf.errors import VallEValueError

    generator = torch.Generator().manual_seed(0)
    batch = VallEDataCollator(tiny_model.config)([random_item(generator, 5, 7, 4, level=0),
                                                  random_item(generator, 5, 7, 4, level=2)])
    with torch.no_grad():
        expected = tiny_model(**batch).item_losses
        for levels in (batch["level"].tolist(), tuple(batch["level"].tolist()), batch["level"].numpy()):
            assert torch.equal(tiny_model(**{**batch, "level": levels}).item_losses, expected), type(levels)
        for wrong in (batch["level"].float(), batch["level"].tolist() + [0.5], True, 1.5):
            with pytest.raises(VallEValueError, match="level must be an integer"):
                tiny_model(**{**batch, "level": wrong})


def test_trainer_with_default_arguments_trains_and_predicts(tmp_path, converted_dir):
    """Default TrainingArguments (remove_unused_columns=True), a frozen codec, predictions over batches whose
    passes (and so heads) differ."""
    from transformers import Trainer, TrainingArguments

    model = VallEForConditionalGeneration.from_pretrained(converted_dir)
    generator = torch.Generator().manual_seed(0)
    items = [random_item(generator, 5, 8, task="stt"), random_item(generator, 4, 6, task="stt"),
             random_item(generator, 6, 9, 4, level=0), random_item(generator, 3, 7, 5, level=3)]
    arguments = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2,
                                  per_device_eval_batch_size=2, save_strategy="no", report_to="none")
    assert arguments.remove_unused_columns
    trainer = Trainer(model=model, args=arguments, train_dataset=items, data_collator=VallEDataCollator(model.config))
    frozen = {id(parameter) for module in (model.codec_model, model.vocoder) for parameter in module.parameters()}
    optimized = {id(parameter) for group in trainer.create_optimizer().param_groups for parameter in group["params"]}
    assert optimized and not optimized & frozen
    trainer.train()
    prediction = trainer.predict(items)
    logits, item_losses, token_losses = prediction.predictions
    assert logits.shape[:2] == prediction.label_ids.shape == token_losses.shape
    assert logits.shape[-1] == max(model.config.head_size(level) for level in range(model.config.num_heads))
    assert item_losses.shape == (len(items),) and np.isfinite(prediction.metrics["test_loss"])


def test_gradient_accumulation_averages_the_models_own_loss_over_its_micro_batches(tmp_path):
    """The model's loss is a mean of per-item means: the Trainer must not hand it `num_items_in_batch` (for a sum over
    tokens it does not compute) and must divide each micro-batch's loss by the accumulation steps itself, or the
    step's loss (and gradient) is their sum."""
    from transformers import Trainer, TrainingArguments

    model = reactive_model()
    generator = torch.Generator().manual_seed(0)
    items = [random_item(generator, 5, 7, 4, level=0), random_item(generator, 4, 6, 3, level=3)]
    collator = VallEDataCollator(model.config)
    with torch.no_grad():
        expected = sum(float(model(**collator([item])).loss) for item in items) / len(items)
    received = []
    model.register_forward_pre_hook(lambda module, args, kwargs: received.append(set(kwargs)), with_kwargs=True)
    arguments = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=1,
                                  gradient_accumulation_steps=2, save_strategy="no", report_to="none")
    result = Trainer(model=model, args=arguments, train_dataset=items, data_collator=collator).train()
    assert len(received) == 2 and not any("num_items_in_batch" in names for names in received)
    assert result.training_loss == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("setting", ["label_smoothing_factor", "compute_loss_func"])
def test_a_trainer_loss_other_than_the_models_is_refused(tmp_path, setting):
    """The Trainer takes the labels away for label smoothing or a compute_loss_func and scores the logits itself,
    unshifted and over -inf-padded heads: the loss was infinite, logged as 0, and the model trained on it anyway."""
    from transformers import Trainer, TrainingArguments

    from valle_hf.errors import VallEValueError

    model = reactive_model()
    generator = torch.Generator().manual_seed(0)
    items = [random_item(generator, 5, 7, 4, level=0), random_item(generator, 4, 6, 3, level=3)]
    smoothing = {"label_smoothing_factor": 0.1} if setting == "label_smoothing_factor" else {}
    arguments = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2,
                                  save_strategy="no", report_to="none", **smoothing)
    loss = {"compute_loss_func": lambda outputs, labels, **kwargs: outputs.logits.float().logsumexp(-1).mean()}
    trainer = Trainer(model=model, args=arguments, train_dataset=items, data_collator=VallEDataCollator(model.config),
                      **({} if smoothing else loss))
    with pytest.raises(VallEValueError, match="came without its labels while training.*label_smoothing_factor at 0"):
        trainer.train()
    batch = VallEDataCollator(model.config)(items[:1])
    del batch["labels"]
    model.eval()
    with torch.no_grad():  # outside training, a training batch's logits stay available for inspection
        assert torch.isfinite(model(**batch).logits).all()
    assert torch.isfinite(model(**batch).logits).all()  # with gradients too (a saliency map of an evaluation)


def test_collator_draws_reproducible_levels_and_tasks(tiny_model):
    config = tiny_model.config
    generator = torch.Generator().manual_seed(1)
    items = [random_item(generator, 4, 5, 3) for _ in range(16)]
    first = VallEDataCollator(config, seed=7, tasks=("tts", "stt"))(items)
    again = VallEDataCollator(config, seed=7, tasks=("tts", "stt"))(items)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert set(first) == {"input_ids", "attention_mask", "labels", "level", "task", "prompt_codes", "audio_codes"}
    assert set(first["task"].tolist()) == {0, 1}  # both tasks drawn
    assert (first["level"][first["task"] == 1] == 0).all()  # STT is always level 0
    assert len(set(first["level"].tolist())) > 2
    few = [{**item, "audio_codes": item["audio_codes"][:, :3]} for item in items]
    few_prompt = [{**item, "prompt_codes": item["prompt_codes"][:, :3]} for item in items]
    for batch in (few, few_prompt):  # a drawn level is capped to the levels present, as the original does
        levels = VallEDataCollator(config, seed=7)(batch)["level"]
        assert levels.max() == 2 and (levels == 2).sum() > 1
    # a given one is refused: capped, it trained another level than the one asked for
    with pytest.raises(ValueError, match="level 6 needs audio_codes and prompt_codes with more than 6 levels, got 3 "
                                         "and"):
        VallEDataCollator(config)([{**few[0], "level": 6}])
    with pytest.raises(ValueError, match="level 3 needs audio_codes and prompt_codes with more than 3 levels, got "
                                         r"\d+ and 3"):
        VallEDataCollator(config)([{**few_prompt[0], "level": 3}])
    assert VallEDataCollator(config)([{**few_prompt[0], "level": 2}])["level"].tolist() == [2]
    with pytest.raises(ValueError, match="padding_side"):
        VallEDataCollator(config, padding_side="middle")


def test_collator_draws_per_item_and_epoch_whatever_the_batches_and_workers(tiny_model):
    """Once an epoch is set, an item's task and level depend on (seed, epoch, its text and codes) only: not on its
    batch, its place in it or the DataLoader workers (persistent ones see a new epoch too); a new epoch draws anew,
    copies in one batch draw apart, and the draws keep the original's distribution."""
    from valle_hf.errors import VallEValueError

    config = tiny_model.config
    generator = torch.Generator().manual_seed(2)
    items = [random_item(generator, 3, 2) for _ in range(12)]
    collator = VallEDataCollator(config, seed=3, tasks=("tts", "stt"))
    assert collator.epoch is None

    def draws(batch):
        return list(zip(batch["level"].tolist(), batch["task"].tolist(), strict=True))

    collator.set_epoch(4)
    whole = draws(collator(items))
    assert draws(collator(items[::-1])) == whole[::-1]
    assert draws(collator(items[:5])) + draws(collator(items[5:])) == whole
    assert draws(VallEDataCollator(config, seed=3, tasks=("tts", "stt"))(items)) != whole  # no epoch: the stream
    loader = torch.utils.data.DataLoader(items, batch_size=5, collate_fn=collator, num_workers=2,
                                         persistent_workers=True)
    for epoch in (4, 5):
        collator.set_epoch(epoch)
        expected = draws(collator(items))
        assert [pair for batch in loader for pair in draws(batch)] == expected
    assert expected != whole  # epoch 5 drew anew
    assert len(set(draws(collator([items[0]] * 8)))) > 1  # copies in one batch draw apart

    many = [random_item(generator, 2, 1) for _ in range(3_000)]
    collator = VallEDataCollator(config, seed=3, tasks=("tts", "stt"))
    collator.set_epoch(0)
    batches = [collator(many[start:start + 500]) for start in range(0, len(many), 500)]
    levels = torch.cat([batch["level"][batch["task"] == 0] for batch in batches])
    tasks = torch.cat([batch["task"] for batch in batches])
    frequencies = torch.bincount(levels, minlength=8).float() / len(levels)
    assert (frequencies - torch.tensor([(8 - k) / 36 for k in range(8)])).abs().max() < 0.04
    assert abs(tasks.float().mean() - 0.5) < 0.04
    for wrong in (-1, 1.0, True, 2**63):
        with pytest.raises(VallEValueError, match="epoch must be a non-negative integer"):
            collator.set_epoch(wrong)
    collator.set_epoch(None)
    assert collator.epoch is None


def test_stream_draws_differ_between_the_processes_of_a_distributed_run(tiny_model, monkeypatch):
    """Without an epoch, each process draws from its own stream: the same seed in every process would give the
    items of rank 1 the draws of rank 0's, in step."""
    from valle_hf import training

    generator = torch.Generator().manual_seed(2)
    items = [random_item(generator, 3, 2) for _ in range(12)]
    draws = {}
    for rank in (0, 1):
        monkeypatch.setattr(training, "_rank", lambda rank=rank: rank)
        batch = VallEDataCollator(tiny_model.config, seed=3, tasks=("tts", "stt"))(items)
        draws[rank] = list(zip(batch["level"].tolist(), batch["task"].tolist(), strict=True))
    assert draws[0] != draws[1]


def test_the_epoch_reaches_every_dataset_within_a_concatenation(tmp_path, tiny_model):
    """`on_epoch_begin` keys the prompts of each VallEDataset a ConcatDataset (of Subsets) holds."""
    from types import SimpleNamespace

    from valle_hf.dataset import VallEDataset

    write_tiny_dataset(tmp_path)
    parts = [VallEDataset(tmp_path), VallEDataset(tmp_path)]
    joined = torch.utils.data.ConcatDataset([parts[0], torch.utils.data.Subset(parts[1], [1, 0])])
    collator = VallEDataCollator(tiny_model.config)
    collator.on_epoch_begin(None, SimpleNamespace(), None, train_dataloader=torch.utils.data.DataLoader(joined))
    assert [part.epoch for part in parts] == [0, 0] and collator.epoch == 0


def test_codes_with_fewer_levels_than_the_batch_keep_their_levels_in_place(tiny_model):
    """A batch of items with fewer levels (an STT item's audio, data prepared with fewer) beside full ones: the
    missing levels are filled after a row's own, which stay where the embedding reads them."""
    config = tiny_model.config
    generator = torch.Generator().manual_seed(4)
    text = torch.tensor([config.text_bos_token_id, 5, 6, config.text_eos_token_id])
    few, full = (torch.randint(0, config.audio_vocab_size, (frames, levels), generator=generator)
                 for frames, levels in ((5, 2), (4, config.num_rvq_levels)))
    batch = collate_sequences(config, [build_training_sequence(config, text, codes, 1) for codes in (few, full)])
    assert torch.equal(batch["audio_codes"][0, : len(few), : few.shape[1]], few)
    assert torch.equal(batch["audio_codes"][1, : len(full)], full)


@pytest.mark.parametrize("key, value, message", [
    ("audio_codes", lambda item: item["audio_codes"].index_fill(0, torch.tensor([1]), 1024),
     r"audio_codes must lie in 0\.\.1023, got"),
    ("audio_codes", lambda item: item["audio_codes"].index_fill(0, torch.tensor([0]), 5000),
     "audio_codes must lie .* to 5000"),
    ("audio_codes", lambda item: item["audio_codes"].index_fill(0, torch.tensor([0]), -5),
     "audio_codes must lie .* from -5"),
    ("audio_codes", lambda item: item["audio_codes"][:0], r"audio_codes is empty"),
    ("audio_codes", lambda item: item["audio_codes"].float(),
     "audio_codes must be integer ids, got dtype torch.float32"),
    ("input_ids", lambda item: item["input_ids"].index_fill(0, torch.tensor([1]), 9999),
     r"input_ids must lie in 0\.\."),
    ("input_ids", lambda item: item["input_ids"][:0], "input_ids is empty"),
    # an empty text: the processor refuses it; it trained TTS on nothing to say
    ("input_ids", lambda item: item["input_ids"][[0, -1]], "input_ids hold no phoneme between <bos> and </eos>"),
    ("input_ids", lambda item: F.pad(item["input_ids"], (0, 3)), "input_ids must be one text's phoneme ids from"),
    ("input_ids", lambda item: item["input_ids"][1:], "input_ids must be one text's phoneme ids from"),
    ("input_ids", lambda item: item["input_ids"][:-1], "input_ids must be one text's phoneme ids from"),
    ("input_ids", lambda item: item["input_ids"].repeat(2), "input_ids must be one text's phoneme ids from"),
    ("input_ids", lambda item: torch.cat([item["input_ids"][:2], item["input_ids"][:1], item["input_ids"][2:]]),
     "input_ids must be one text's phoneme ids from"),  # a <bos> inside, but no </eos> inside
    ("input_ids", lambda item: item["input_ids"].float(), "input_ids must be integer ids, got dtype torch.float32"),
    ("input_ids", lambda item: item["input_ids"].bool(), "input_ids must be integer ids, got dtype torch.bool"),
    ("prompt_codes", lambda item: item["prompt_codes"][:0], "prompt_codes is empty"),
    ("audio_codes", lambda item: None, "the item has no audio_codes: every item needs input_ids"),
    ("input_ids", lambda item: None, "the item has no input_ids"),
    ("audio_codes", lambda item: torch.tensor(5), r"audio_codes must have shape \[frames, levels\], got \(\)"),
    # [levels, frames], as an encoder gives them: trained on the first levels of a few "frames", without a word
    ("audio_codes", lambda item: torch.zeros(8, 40, dtype=torch.long),
     r"audio_codes has shape \(8, 40\): 40 levels per frame, more than the codec's 32; codes are \[frames, levels\]"),
    ("prompt_codes", lambda item: torch.zeros(8, 40, dtype=torch.long), r"prompt_codes has shape \(8, 40\): 40 levels"),
    ("prompt_codes", lambda item: torch.tensor(5), r"prompt_codes must have shape \[frames, levels\], got \(\)"),
    ("level", lambda item: 9, r"level must be an integer in 0\.\.7, got 9"),
    ("level", lambda item: 8, r"level must be an integer in 0\.\.7, got 8"),  # one past the model's last level
    ("level", lambda item: True, r"level must be an integer in 0\.\.7, got True"),
    ("level", lambda item: 2.0, r"level must be an integer in 0\.\.7, got 2.0"),
    ("level", lambda item: torch.tensor(True), r"level must be an integer in 0\.\.7, got tensor\(True\)"),
    ("level", lambda item: torch.tensor(2.0), r"level must be an integer in 0\.\.7, got tensor\(2\.\)"),
    # int() read a complex level: 1+0j ran level 1, 1+2j crashed with a RuntimeError
    ("level", lambda item: torch.tensor(1 + 0j), r"level must be an integer in 0\.\.7, got tensor\(1\.\+0\.j\)"),
    ("level", lambda item: torch.tensor(1 + 2j), r"level must be an integer in 0\.\.7, got tensor\(1\.\+2\.j\)"),
])
def test_the_collator_refuses_what_it_cannot_train_on_naming_the_item(tiny_model, key, value, message):
    from valle_hf.errors import VallEValueError

    generator = torch.Generator().manual_seed(5)
    good = random_item(generator, 4, 6, 3, level=1)
    bad = {**good, key: value(good), "id": "spk/utt7"}
    with pytest.raises(VallEValueError, match=rf"item 1 \(spk/utt7\) of the batch: {message}"):
        VallEDataCollator(tiny_model.config)([good, bad])
    with pytest.raises(VallEValueError, match="batch of 0 items"):
        VallEDataCollator(tiny_model.config)([])
    for row in (None, (good["input_ids"], good["audio_codes"])):
        with pytest.raises(VallEValueError, match=r"item 1 of the batch: an item is a dict \(input_ids, audio_codes"):
            VallEDataCollator(tiny_model.config)([good, row])


def test_ids_and_codes_of_small_integer_dtypes_collate_as_int64_ones(tiny_model):
    """A uint8 (or int8) tensor compared with the vocabulary's size wrapped it round ("input_ids must lie in 0..255,
    got values from 1 to 41"): ids and codes that fit a small dtype are what they are in int64, in the collator and
    in `generate`."""
    config = tiny_model.config
    generator = torch.Generator().manual_seed(6)
    item = random_item(generator, 4, 6, 3, level=1)
    item["input_ids"] = item["input_ids"] % min(config.text_vocab_size, 127)  # fits int8 and uint8
    item["audio_codes"], item["prompt_codes"] = item["audio_codes"] % 127, item["prompt_codes"] % 127
    expected = VallEDataCollator(config)([item])
    for dtype in (torch.uint8, torch.int8, torch.int16):
        small = {**item, **{key: item[key].to(dtype) for key in ("input_ids", "audio_codes", "prompt_codes")}}
        batch = VallEDataCollator(config)([small])
        assert all(torch.equal(batch[key], expected[key]) for key in expected), dtype
        small_codes, codes = (tiny_model.generate(input_ids=given["input_ids"][None],
                                                  prompt_codes=given["prompt_codes"][None], max_new_tokens=2,
                                                  output_audio=False, temperature=0.0)[0] for given in (small, item))
        assert torch.equal(small_codes, codes), dtype


def test_each_segment_of_an_item_fits_the_models_positions(tiny_model):
    """A text, prompt or response longer than the model's positions (which restart in each segment) trained on
    positions `generate` refuses; the AR's response holds its stop token after its frames."""
    from valle_hf.errors import VallEValueError

    config = tiny_model.config
    positions = config.max_position_embeddings
    generator = torch.Generator().manual_seed(8)
    item = random_item(generator, 4, 6, 3)

    def collated(level, **changes):
        return VallEDataCollator(config)([{**item, "level": level, **changes}])

    def codes(frames):
        return torch.randint(0, config.audio_vocab_size, (frames, config.num_rvq_levels), generator=generator)

    def text(tokens):
        return torch.cat([torch.tensor([1]), torch.randint(3, config.text_vocab_size, (tokens - 2,),
                                                           generator=generator), torch.tensor([2])])

    for level, frames in ((0, positions - 1), (1, positions)):
        assert collated(level, audio_codes=codes(frames))["level"].tolist() == [level]
        with pytest.raises(VallEValueError, match=f"audio_codes is {positions + 1} long, and this model has "
                                                  f"positions for {positions}"):
            collated(level, audio_codes=codes(frames + 1))
    collated(1, prompt_codes=codes(positions))
    with pytest.raises(VallEValueError, match=f"prompt_codes is {positions + 1} long"):
        collated(1, prompt_codes=codes(positions + 1))
    collated(1, input_ids=text(positions))
    with pytest.raises(VallEValueError, match=f"input_ids is {positions + 1} long"):
        collated(1, input_ids=text(positions + 1))


def test_stt_for_a_model_without_a_text_head_is_refused_when_the_collator_is_made():
    """It was refused only by the first STT item's forward pass, in the middle of training."""
    from valle_hf.errors import VallEValueError

    config = tiny_config(text_head=False)
    assert VallEDataCollator(config, tasks=("tts",)).tasks == ("tts",)
    for tasks in (("stt",), ("tts", "stt")):
        with pytest.raises(VallEValueError, match=rf"tasks \{list(tasks)!r}\ include 'stt', but the model has no "
                                                  "text head"):
            VallEDataCollator(config, tasks=tasks)


def test_stt_audio_with_fewer_levels_than_the_model_reads_is_refused(tiny_model):
    from valle_hf.errors import VallEValueError

    config = tiny_model.config
    item = random_item(torch.Generator().manual_seed(5), 5, 8, task="stt")
    assert config.stt_levels > 1
    for few in range(1, config.stt_levels):
        with pytest.raises(VallEValueError, match=rf"STT audio needs {config.stt_levels}\+ code levels, got {few}$"):
            VallEDataCollator(config)([{**item, "audio_codes": item["audio_codes"][:, :few]}])
    assert VallEDataCollator(config)([item])["task"].tolist() == [1]
    exactly = {**item, "audio_codes": item["audio_codes"][:, :config.stt_levels]}  # all it reads, and no more
    assert VallEDataCollator(config)([exactly])["task"].tolist() == [1]


def test_build_training_sequence_refuses_a_level_its_codes_or_its_task_do_not_have(tiny_model):
    """Called directly (the collator caps its levels), a level past the codes' last one failed inside torch's
    indexing; an STT item given another level than 0 (its only level) is refused, not silently taken as level 0."""
    from valle_hf.errors import VallEValueError

    config = tiny_model.config
    item = random_item(torch.Generator().manual_seed(5), 4, 6, 3)
    text, codes, prompt = item["input_ids"], item["audio_codes"], item["prompt_codes"]
    assert build_training_sequence(config, text, codes[:, :3], 2, "tts", prompt).level == 2
    for levels in (3, config.num_rvq_levels):
        with pytest.raises(VallEValueError, match=rf"^level {levels} needs codes with more than {levels} levels"):
            build_training_sequence(config, text, codes[:, :levels], levels, "tts", prompt)
    assert build_training_sequence(config, text, codes, 0, "stt").task == "stt"
    with pytest.raises(VallEValueError, match="^STT items are always level 0, got level 2$"):
        build_training_sequence(config, text, codes, 2, "stt")


# ---------------------------------------------------------------------------------------------------- overfit


def test_overfit_one_utterance_then_generate_reproduces_it():
    """Train on one utterance until the loss falls by >= 90 %; greedy AR + NAR must then return its codes exactly."""
    config = tiny_config(hidden_size=32, num_attention_heads=2, num_hidden_layers=1, intermediate_size=64)
    model = reactive_model(config)
    item = random_item(torch.Generator().manual_seed(1), 6, 8, 5)
    batch = VallEDataCollator(config)([{**item, "level": level} for level in range(config.num_rvq_levels)])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(60):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] <= 0.1 * losses[0], losses[::10]
    model.eval()
    codes = model.generate(input_ids=item["input_ids"][None], prompt_codes=item["prompt_codes"][None],
                           **{**PLAIN_SETTINGS, "temperature": 0.0}, max_new_tokens=20, output_audio=False)[0]
    assert torch.equal(codes, item["audio_codes"]), (codes.T, item["audio_codes"].T)


# ---------------------------------------------------------------------------------------------------- LoRA


def test_a_lora_rank_above_the_smallest_adapted_layer_is_refused_and_no_deprecation_warning_is_printed():
    """A rank past a layer's smaller size cannot raise the update's rank: the extra adapter weights add nothing (a
    typo such as --lora-rank 100000 trained 134 M parameters on a 1 M model). peft's call of a deprecated transformers
    method printed a FutureWarning the user could do nothing about."""
    model = reactive_model()
    smallest = min(min(weight.shape) for name, weight in model.state_dict().items()
                   if re.search(rf"backbone\.layers\.\d+\.\w+\.({'|'.join(LORA_TARGET_MODULES)})\.weight$", name))
    with pytest.raises(VallEValueError, match=f"LoRA rank {smallest + 1} is above {smallest}, the smallest size of the "
                                              f"layers it adapts.*give a rank of at most {smallest}$"):
        add_lora(model, rank=smallest + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapted = add_lora(model, rank=smallest)
    assert adapted.peft_config["default"].r == smallest


def test_lora_trains_only_adapters_and_merges_to_a_plain_checkpoint(tmp_path):
    model = reactive_model()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    torch.manual_seed(0)  # peft draws the adapters from the global generator, which the tests before leave anywhere
    adapted = add_lora(model, rank=4, alpha=8.0)
    trainable = [name for name, p in adapted.named_parameters() if p.requires_grad]
    targets = {name.split(".lora_")[0].split("backbone.")[1] for name in trainable}
    layers = model.config.num_hidden_layers
    assert all("lora_" in name for name in trainable)
    assert targets == {f"layers.{i}.{module}" for i in range(layers) for module in (
        "self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    generator = torch.Generator().manual_seed(2)
    batch = VallEDataCollator(model.config)([random_item(generator, 5, 6, 4, level=level) for level in (0, 2, 5)])
    optimizer = torch.optim.AdamW([p for p in adapted.parameters() if p.requires_grad], lr=1e-2)
    adapted.train()
    for _ in range(2):
        adapted(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    base = adapted.get_base_model().state_dict()
    base = {name.replace(".base_layer", ""): value for name, value in base.items() if "lora_" not in name}
    assert set(base) == set(before)
    assert all(torch.equal(base[name], before[name]) for name in before), "a non-adapter weight changed"
    adapted.eval()
    with torch.no_grad():
        expected = adapted(**batch).logits
        merged = adapted.merge_and_unload()
        merged.save_pretrained(tmp_path / "merged")
        reloaded = VallEForConditionalGeneration.from_pretrained(tmp_path / "merged").eval()
        logits = reloaded(**batch).logits
    assert not any("lora" in name for name in reloaded.state_dict())
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(logits))
    # Merged weights round once more than the adapter's separate product: float32 rounding, relative to the logits
    torch.testing.assert_close(logits[finite], expected[finite], rtol=1e-5, atol=1e-5)
    assert not torch.equal(reloaded.model.backbone.layers[0].self_attn.q_proj.weight,
                           before["model.backbone.layers.0.self_attn.q_proj.weight"])


def test_lora_takes_the_rank_alpha_and_dropout_it_is_given():
    """add_lora's own arguments, not peft's or the original's defaults: the adapters' width (rank), their scale
    (alpha / rank) and the dropout on their input."""
    adapted = add_lora(reactive_model(), rank=2, alpha=6.0, dropout=0.25)
    layers = adapted.get_base_model().model.backbone.layers
    for projection in (layers[0].self_attn.q_proj, layers[-1].mlp.down_proj):
        assert projection.lora_A["default"].out_features == projection.lora_B["default"].in_features == 2
        assert projection.scaling["default"] == 6.0 / 2
        assert projection.lora_dropout["default"].p == 0.25


# ---------------------------------------------------------------------------------------------------- resuming


def trained_draws(output: Path, data: Path, workers: int, resume: str | None = None, persistent: bool = False,
                  subset: bool = False):
    """Train a tiny model on `write_tiny_dataset`'s 4 utterances for 3 epochs of 2 steps (VallEDataset prompts, the
    collator's levels and tasks, a checkpoint every 3 steps), the dataset within a `Subset` (as `random_split` gives)
    with `subset`; returns each step's batch and (step, loss, grad norm)."""
    from transformers import Trainer, TrainingArguments

    from valle_hf.dataset import VallEDataset

    batches = []

    class Recording(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            batches.append({key: value.tolist() for key, value in inputs.items()})
            return super().training_step(model, inputs, num_items_in_batch)

    model = reactive_model()
    collator = VallEDataCollator(model.config, seed=5, tasks=("tts", "stt"))
    arguments = TrainingArguments(output_dir=str(output), num_train_epochs=3, per_device_train_batch_size=2,
                                  save_steps=3, logging_steps=1, report_to="none", use_cpu=True, seed=5,
                                  dataloader_num_workers=workers, dataloader_persistent_workers=persistent)
    dataset = VallEDataset(data, (0.2, 0.5), seed=5)
    dataset = torch.utils.data.Subset(dataset, [3, 0, 1, 2]) if subset else dataset
    trainer = Recording(model=model, args=arguments, train_dataset=dataset, data_collator=collator,
                        callbacks=[collator])
    trainer.train(resume_from_checkpoint=resume)
    logged = [(entry["step"], entry["loss"], entry["grad_norm"]) for entry in trainer.state.log_history
              if "loss" in entry]
    return batches, logged


@pytest.mark.parametrize("workers, persistent, subset", [(0, False, False), (2, False, False), (2, True, False),
                                                          (0, False, True)],
                         ids=["in-process", "workers", "persistent-workers", "subset"])
def test_resume_from_checkpoint_sees_the_draws_of_an_uninterrupted_run(tmp_path, workers, persistent, subset):
    """The collator's levels and tasks and VallEDataset's prompts started again from the seed on resume (the Trainer
    skips the consumed batches without collating them), so the resumed steps trained on other draws than the run
    they continue: here a checkpoint mid-epoch 1, resumed through epoch 2, must see the same batches, losses and
    gradient norms."""
    write_tiny_dataset(tmp_path / "data")
    batches, logged = trained_draws(tmp_path / "whole", tmp_path / "data", workers, persistent=persistent,
                                    subset=subset)
    assert len(batches) == len(logged) == 6
    resumed, resumed_logged = trained_draws(tmp_path / "whole", tmp_path / "data", workers,
                                            str(tmp_path / "whole" / "checkpoint-3"), persistent, subset)
    assert resumed == batches[3:]
    assert resumed_logged == logged  # the checkpoint's log of steps 1-3, then the resumed steps 4-6


# ---------------------------------------------------------------------------------------------------- scripts


def write_tiny_dataset(root: Path, speakers: int = 2, per_speaker: int = 2, levels: int | None = None) -> None:
    """`levels`: the RVQ levels kept (None: all of `random_item`'s)."""
    generator = torch.Generator().manual_seed(3)
    for speaker in range(speakers):
        for index in range(per_speaker):
            item = random_item(generator, 4 + index, 80 + 5 * index)
            utterance = f"spk{speaker}/utt{index}"
            file = save_utterance(root, utterance, item["input_ids"], item["audio_codes"][:, :levels])
            append_manifest(root, {"id": utterance, "speaker": f"spk{speaker}", "frames": len(item["audio_codes"]),
                                   "file": file})


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_finetune_example_runs_end_to_end(tmp_path, lora):
    reactive_model().save_pretrained(tmp_path / "model")
    write_tiny_dataset(tmp_path / "data")
    finetune = load_script(REPO / "examples" / "finetune.py")
    argv = ["--model", str(tmp_path / "model"), "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
            "--max-steps", "2", "--batch-size", "2", "--gradient-accumulation-steps", "2", "--save-steps", "0",
            "--tasks", "tts,stt", "--prompt-duration", "0.2", "0.5", "--logging-steps", "1"]
    if lora:
        argv += ["--lora", "--lora-rank", "4", "--lora-alpha", "8"]
    final = finetune.train(argv)
    trained = VallEForConditionalGeneration.from_pretrained(final)
    original = VallEForConditionalGeneration.from_pretrained(tmp_path / "model")
    name = "model.backbone.layers.0.mlp.up_proj.weight"
    assert not torch.equal(trained.state_dict()[name], original.state_dict()[name])
    if lora:
        assert (tmp_path / "out" / "adapter").is_dir()
        assert torch.equal(trained.model.embeddings.text.weight, original.model.embeddings.text.weight)


@pytest.mark.parametrize("save_steps", ["1", "0"], ids=["checkpoint", "final"])
def test_finetune_whose_save_the_file_system_refuses_says_so_in_one_line(tmp_path, capsys, save_steps):
    """safetensors raises its own error (no OSError) for a full disk or the file-size limit: it was a traceback, and a
    final/ cut short was left, which the next run took for a trained model."""
    import resource

    reactive_model().save_pretrained(tmp_path / "model")
    write_tiny_dataset(tmp_path / "data")
    finetune = load_script(REPO / "examples" / "finetune.py")
    argv = ["--model", tmp_path / "model", "--data", tmp_path / "data", "--output", tmp_path / "out", "--max-steps",
            "1", "--batch-size", "2", "--gradient-accumulation-steps", "1", "--save-steps", save_steps,
            "--prompt-duration", "0.2", "0.5"]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, ((tmp_path / "model" / "model.safetensors").stat().st_size // 2, hard))
    try:
        status = finetune.main(list(map(str, argv)))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    assert status == 1 and f"error: could not save in {tmp_path / 'out'} (" in err and "Traceback" not in err, err
    assert "then run the same command with --resume" in err
    assert not (tmp_path / "out" / "final").exists()


def test_finetune_trains_in_two_cpu_processes(tmp_path):
    """Under a launcher on CPUs the processes were refused ("several processes need GPUs"), though transformers' Trainer
    joins them (gloo) since the script trains with use_cpu. Joined, they share the epoch: a step takes a batch from
    each process; and the main process alone saves and reports. Each process takes the group down before it exits."""
    reactive_model().save_pretrained(tmp_path / "model")
    write_tiny_dataset(tmp_path / "data")
    items, processes, batch, steps = 4, 2, 1, 2  # write_tiny_dataset's 2 speakers x 2 utterances
    run, script = tmp_path / "run.py", str(REPO / "examples" / "finetune.py")
    # finetune.py, saying at each process's exit whether its process group is still up
    run.write_text(f"{GROUP_AT_EXIT}import importlib.util, sys\n"
                   f"spec = importlib.util.spec_from_file_location('finetune', {script!r})"
                   "\nfinetune = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(finetune)\n"
                   "sys.exit(finetune.main())\n", encoding="utf-8")
    command = [*accelerate_launch(processes), run, "--model", tmp_path / "model",
               "--data", tmp_path / "data", "--output", tmp_path / "out", "--max-steps", steps, "--batch-size", batch,
               "--gradient-accumulation-steps", "1", "--save-steps", steps, "--prompt-duration", "0.2", "0.5"]
    result = subprocess.run(list(map(str, command)), env=subprocess_environment(), capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("group up at exit: False") == processes, result.stderr[-3000:]
    assert result.stdout.count("saved to") == 1, result.stdout
    state = json.loads((tmp_path / "out" / f"checkpoint-{steps}" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["epoch"] == steps * batch * processes / items
    trained = VallEForConditionalGeneration.from_pretrained(tmp_path / "out" / "final")
    name = "model.backbone.layers.0.mlp.up_proj.weight"
    assert not torch.equal(trained.state_dict()[name], reactive_model().state_dict()[name])


def test_finetune_warns_once_for_a_run_of_several_processes(monkeypatch, capsys):
    """Under a launcher each process printed each of finetune's warnings (before any process group is joined, too):
    the main process alone says them."""
    finetune = load_script(REPO / "examples" / "finetune.py")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        finetune.warn("--resume: starting a new run")
    assert capsys.readouterr().err == "warning: --resume: starting a new run\n"


def test_finetune_says_a_mistyped_option_once_for_a_run_of_several_processes(monkeypatch, capsys):
    """Under a launcher each process printed the same `error:` line for one mistyped option."""
    finetune = load_script(REPO / "examples" / "finetune.py")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        assert finetune.main(["--model", "m", "--data", "d", "--output", "o", "--lora-rnk", "8"]) == 1
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1 and said[0].startswith("error: ") and "--lora-rank" in said[0], said


def test_finetune_warns_when_the_data_has_fewer_levels_than_the_model(tmp_path, monkeypatch, capsys):
    """The collator caps the NAR levels to those the data holds: levels past them were never trained, silently."""
    model = reactive_model()
    model.save_pretrained(tmp_path / "model")
    finetune = load_script(REPO / "examples" / "finetune.py")

    def interrupted(self, **kwargs):  # stop where training would start
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune.VallETrainer, "train", interrupted)
    argv = ["--model", tmp_path / "model", "--output", tmp_path / "out", "--prompt-duration", "0.2", "0.5"]
    for levels in (None, model.config.num_rvq_levels - 2):
        write_tiny_dataset(tmp_path / f"data{levels}", levels=levels)
        capsys.readouterr()
        assert finetune.main(list(map(str, [*argv, "--data", tmp_path / f"data{levels}"]))) == 130
        warned = "are not trained (prepare the data with --bandwidth 6" in capsys.readouterr().err
        assert warned == (levels is not None)


def test_finetune_interrupted_before_its_first_checkpoint_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    """It said "the checkpoints saved so far are kept in --output" and left the empty folder it had made; a folder
    the user made is left, and a run with a checkpoint says it is kept."""
    reactive_model().save_pretrained(tmp_path / "model")
    write_tiny_dataset(tmp_path / "data")
    finetune = load_script(REPO / "examples" / "finetune.py")
    saved = []

    def interrupted(self, **kwargs):
        Path(self.args.output_dir, "runs").mkdir(parents=True, exist_ok=True)  # a logger's, with nothing in it yet
        for path in saved:  # a whole checkpoint: the Trainer writes its trainer_state.json last
            path.mkdir(parents=True)
            (path / "trainer_state.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune.VallETrainer, "train", interrupted)
    argv = ["--model", tmp_path / "model", "--data", tmp_path / "data", "--prompt-duration", "0.2", "0.5"]
    assert finetune.main(list(map(str, [*argv, "--output", tmp_path / "out"]))) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "interrupted before the first checkpoint: nothing was saved"
    assert not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()
    assert finetune.main(list(map(str, [*argv, "--output", tmp_path / "mine"]))) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "interrupted before the first checkpoint: nothing was saved"
    assert (tmp_path / "mine").is_dir()
    saved.append(tmp_path / "mine" / "checkpoint-1")
    assert finetune.main(list(map(str, [*argv, "--output", tmp_path / "mine"]))) == 130
    assert capsys.readouterr().err.splitlines()[-1].startswith("interrupted: the checkpoints saved so far are kept")


def test_finetune_resume_and_stt_only_without_a_prompt(tmp_path, monkeypatch, capsys):
    """--resume on a first launch (a preemptible job's) starts a run and says so; STT alone reads no prompt, so
    --prompt-duration 0 0 is no mistake there."""
    reactive_model().save_pretrained(tmp_path / "model")
    write_tiny_dataset(tmp_path / "data")
    finetune = load_script(REPO / "examples" / "finetune.py")
    started = []
    monkeypatch.setattr(finetune.VallETrainer, "train", lambda self, **kwargs: started.append(kwargs))
    monkeypatch.setattr(finetune.VallETrainer, "save_model", lambda self, path: Path(path).mkdir())
    argv = ["--model", tmp_path / "model", "--data", tmp_path / "data", "--output", tmp_path / "out", "--resume",
            "--tasks", "stt", "--prompt-duration", "0", "0"]
    finetune.train(list(map(str, argv)))
    assert started == [{"resume_from_checkpoint": None}]
    assert "warning: --resume: --output" in capsys.readouterr().err
    # a run stopped while saving checkpoint-100 (no trainer_state.json, written last): the complete one before it
    for step in (9, 12, 100):
        (tmp_path / "out" / f"checkpoint-{step}").mkdir(parents=True)
    for step in (9, 12):
        shutil.copy(tmp_path / "model" / "model.safetensors", tmp_path / "out" / f"checkpoint-{step}")
        (tmp_path / "out" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    finetune.train(list(map(str, argv)))
    assert started[-1] == {"resume_from_checkpoint": str(tmp_path / "out" / "checkpoint-12")}
    assert ("warning: --resume: checkpoint-100 in --output " in capsys.readouterr().err)


def _ended_run(tmp_path, *options):
    """The fine-tuning script, and the arguments and --output of a run of one step, saved as a checkpoint, that ran."""
    reactive_model().save_pretrained(tmp_path / "model")
    write_tiny_dataset(tmp_path / "data")
    finetune = load_script(REPO / "examples" / "finetune.py")
    out = tmp_path / "out"
    argv = ["--model", tmp_path / "model", "--data", tmp_path / "data", "--output", out, "--max-steps", "1",
            "--save-steps", "1", "--batch-size", "2", "--gradient-accumulation-steps", "1", "--prompt-duration",
            "0.2", "0.5", *options]
    assert finetune.main(list(map(str, argv))) == 0
    return finetune, argv, out


def test_finetune_resume_of_an_ended_run_keeps_its_model(tmp_path, capsys):
    """--resume of a run that had ended trained a step past its --max-steps (the Trainer resumes mid-epoch without
    checking the step count first) and saved final/ over the trained model without a word; of a run that kept no
    checkpoint (--save-steps 0) it trained a new run from --model over the trained final/."""
    finetune, argv, out = _ended_run(tmp_path)
    saved = {path.name: path.stat().st_mtime_ns for path in (out / "final").iterdir()}
    capsys.readouterr()
    assert finetune.main(list(map(str, [*argv, "--resume"]))) == 0
    assert f"warning: --resume: the run in --output {out} had already ended (step 1)" in capsys.readouterr().err
    assert {path.name: path.stat().st_mtime_ns for path in (out / "final").iterdir()} == saved
    shutil.rmtree(out / "checkpoint-1")
    assert finetune.main(list(map(str, [*argv, "--resume"]))) == 1
    assert capsys.readouterr().err.startswith(f"error: --resume: --output {out} holds a trained model (final/) but "
                                              "no checkpoint to continue its run from")
    assert {path.name: path.stat().st_mtime_ns for path in (out / "final").iterdir()} == saved


def test_finetune_resume_with_other_training_options_than_the_run_is_refused(tmp_path, capsys):
    """--resume took another --lora-dropout, --seed, --tasks, --prompt-duration or --learning-rate than the run's and
    trained on: other draws, rates or adapter than the run it claimed to continue. Each checkpoint records them."""
    finetune, argv, out = _ended_run(tmp_path, "--lora", "--lora-rank", "4")
    recorded = json.loads((out / "checkpoint-1" / finetune.RUN_OPTIONS_FILE).read_text())
    assert recorded["seed"] == 0 and recorded["prompt_duration"] == [0.2, 0.5] and recorded["lora_dropout"] == 0.1
    capsys.readouterr()
    for other, shown in [(("--lora-dropout", "0.3"), "--lora-dropout 0.1"), (("--seed", "9"), "--seed 0"),
                         (("--prompt-duration", "0.3", "0.5"), "--prompt-duration 0.2 0.5")]:
        assert finetune.main(list(map(str, [*argv, *other, "--resume"]))) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: --resume: checkpoint-1 in --output {out} was saved by a run with {shown}: "
                              "resume with the options it was started with"), err
    recorded_tasks = out / "checkpoint-1" / finetune.RUN_OPTIONS_FILE
    recorded_tasks.write_text(json.dumps({**recorded, "tasks": ["tts", "stt"]}))  # as a run of both tasks records them
    assert finetune.main(list(map(str, [*argv, "--resume"]))) == 1
    assert "was saved by a run with --tasks tts,stt: " in capsys.readouterr().err  # as the option is written
    recorded_tasks.write_text(json.dumps(recorded))
    assert finetune.main(list(map(str, [*argv, "--max-steps", "2", "--num-workers", "1", "--resume"]))) == 0
    assert json.loads((out / "checkpoint-2" / finetune.RUN_OPTIONS_FILE).read_text()) == recorded


def test_finetune_saves_files_others_may_read(tmp_path):
    """final/model.safetensors and the adapter's weights were owner-only (safetensors' mode), where the umask gives
    every other file read access: another user of the machine could not load the fine-tuned model."""
    _, _, out = _ended_run(tmp_path, "--lora", "--lora-rank", "4")
    umask = os.umask(0o022)
    os.umask(umask)
    files = [path for folder in ("final", "adapter") for path in (out / folder).rglob("*") if path.is_file()]
    assert any(path.name.endswith(".safetensors") for path in files)
    assert {path.stat().st_mode & 0o777 for path in files} == {0o666 & ~umask}


def test_finetune_resume_on_another_data_set_is_refused_and_on_the_same_one_moved_is_not(tmp_path, capsys):
    """--resume with another --data trained on, the Trainer skipping as many of its batches as the run had trained
    on: items of the new set never trained, without a word."""
    finetune, argv, out = _ended_run(tmp_path)
    other = tmp_path / "other"
    write_tiny_dataset(other, speakers=3)
    data = argv.index("--data") + 1
    capsys.readouterr()
    assert finetune.main(list(map(str, [*argv[:data], other, *argv[data + 1:], "--max-steps", "2", "--resume"]))) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --resume: checkpoint-1 in --output {out} was saved by a run on another data set "
                          f"than --data {other} (its manifest differs)"), err
    missing = tmp_path / "missing"  # the data set's own check says what is wrong with it, not "another data set"
    assert finetune.main(list(map(str, [*argv[:data], missing, *argv[data + 1:], "--max-steps", "2", "--resume"]))) == 1
    assert "another data set" not in capsys.readouterr().err
    moved = tmp_path / "moved"
    shutil.move(argv[data], moved)
    assert finetune.main(list(map(str, [*argv[:data], moved, *argv[data + 1:], "--max-steps", "2", "--resume"]))) == 0


@pytest.mark.parametrize("length", [("--max-steps", "1"), ("--max-steps", "-1", "--epochs", "1")],
                         ids=["max_steps", "epochs"])
def test_finetune_resume_trains_on_where_the_run_is_longer_now(tmp_path, monkeypatch, capsys, length):
    """A run's end is this run's length (--max-steps, or the Trainer's count for --epochs), not the one its checkpoint
    was saved for: raised, the run trains on. Learning that --max-steps has been reached builds no data loader. A
    checkpoint whose optimizer.pt or scheduler.pt was deleted (to save space) resumed with a new AdamW in silence: a
    run that trains on says so; an ended one needs neither."""
    from transformers import TrainerState

    finetune, argv, out = _ended_run(tmp_path, *length)
    last = finetune.last_checkpoint(out)
    steps = TrainerState.load_from_json(str(Path(last) / "trainer_state.json")).global_step
    deleted = "scheduler.pt" if "--epochs" in length else "optimizer.pt"
    (Path(last) / deleted).unlink()
    with monkeypatch.context() as patched:
        if "--epochs" not in length:  # the length is --max-steps: a data loader built would fail
            patched.setattr(finetune.VallETrainer, "get_train_dataloader", None)
        capsys.readouterr()
        assert finetune.main(list(map(str, [*argv, "--resume"]))) == 0
    err = capsys.readouterr().err
    assert f"had already ended (step {steps})" in err and " has no " not in err, err
    longer = ("--epochs", "2") if "--epochs" in length else ("--max-steps", str(2 * steps))
    assert finetune.main(list(map(str, [*argv, *longer, "--resume"]))) == 0
    err = capsys.readouterr().err
    assert "had already ended" not in err
    assert f"warning: --resume: {last} has no {deleted}: training continues from its weights with a new optimiser" \
        in err, err
    state = TrainerState.load_from_json(str(Path(finetune.last_checkpoint(out)) / "trainer_state.json"))
    assert state.global_step == 2 * steps


def test_finetune_reads_a_tilde_in_its_paths_as_the_home_folder(tmp_path, monkeypatch):
    """--data=~/data and --output=~/runs reach the script as they are (no shell expands "~" after "="): the data was
    not found, and checkpoints went to a folder named "~"."""
    monkeypatch.setenv("HOME", str(tmp_path))
    finetune = load_script(REPO / "examples" / "finetune.py")
    args = finetune.parse_args(["--model=~/model", "--data=~/data", "--output=~/runs"])
    assert (args.data, args.output) == (tmp_path / "data", tmp_path / "runs")


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_finetune_resume_of_an_ended_run_without_final_saves_the_last_checkpoint(tmp_path, capsys, lora):
    """--resume of a run that had ended but has no final/ (stopped while saving it) trained a step past its
    --max-steps, as with final/ there: it now trains nothing, says so, and saves final/ from its last checkpoint."""
    from safetensors.torch import load_file

    finetune, argv, out = _ended_run(tmp_path, *(["--lora", "--lora-rank", "2"] if lora else []))
    trained = load_file(out / "final" / "model.safetensors")
    shutil.rmtree(out / "final")
    capsys.readouterr()
    assert finetune.main(list(map(str, [*argv, "--resume"]))) == 0
    assert (f"warning: --resume: the run in --output {out} had already ended (step 1): nothing more was trained "
            "(final/ is saved from checkpoint-1)") in capsys.readouterr().err
    assert sorted(path.name for path in out.glob("checkpoint-*")) == ["checkpoint-1"]
    saved = load_file(out / "final" / "model.safetensors")
    assert saved.keys() == trained.keys() and all(torch.equal(saved[key], trained[key]) for key in trained)


LORA = ("--lora", "--lora-rank", "2", "--lora-alpha", "8")
# case: the run's options, those of its --resume (--model "other": a model of another size), what the error says
RESUMED_WITH_OTHER_OPTIONS = {
    "other_size": ((), ("--model", "other"), "weights of other names or shapes (", "without --lora"),
    "more_layers": ((), ("--model", "deeper"), "weights of other names or shapes (--model's ", "without --lora"),
    "lora_resumed_without": (LORA, (), "a LoRA adapter (a run with --lora)", "without --lora"),
    "full_resumed_with_lora": ((), LORA, "a whole model's weights (a run without --lora)", "with --lora"),
    "other_lora_rank": (LORA, (*LORA, "--lora-rank", "4"), "weights of other names or shapes (", "with --lora"),
    "other_lora_alpha": (LORA, (*LORA, "--lora-alpha", "16"), "a LoRA adapter of --lora-alpha 8", "--lora-alpha 16"),
}


@pytest.mark.parametrize("case", RESUMED_WITH_OTHER_OPTIONS)
def test_finetune_refuses_to_resume_with_a_model_or_lora_the_checkpoint_does_not_fit(tmp_path, capsys, case):
    """--resume with another --model (another size, more layers) or other LoRA options than the run started with was a
    RuntimeError (size mismatch) or ValueError traceback from the Trainer or load_state_dict, or loaded what matched
    and trained on (a deeper model, another --lora-alpha): now one line, before any step and with nothing written."""
    options, resumed_options, held, ours = RESUMED_WITH_OTHER_OPTIONS[case]
    config = tiny_config()
    reactive_model(tiny_config(hidden_size=2 * config.hidden_size)).save_pretrained(tmp_path / "other")
    reactive_model(tiny_config(num_hidden_layers=config.num_hidden_layers + 1)).save_pretrained(tmp_path / "deeper")
    finetune, argv, out = _ended_run(tmp_path, *options)
    resumed_options = [tmp_path / value if value in ("other", "deeper") else value for value in resumed_options]
    argv = [*argv[:len(argv) - len(options)], *resumed_options, "--max-steps", "2", "--resume"]
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*")}
    capsys.readouterr()
    assert finetune.main(list(map(str, argv))) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --resume: {out / 'checkpoint-1'} holds {held}") and err.count("\n") == 1, err
    assert err.endswith(f"{ours} does not fit: resume with the --model (and --lora options) the run started with, or "
                        "start again in another --output\n"), err
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*")} == before


def test_finetune_final_folder_holds_the_processor_and_its_code(tmp_path, monkeypatch):
    """final/ had the tokenizer's files but not the processor's code (processing.py and what it imports), so
    `AutoProcessor.from_pretrained(final, trust_remote_code=True)` failed where valle-hf is not installed."""
    from valle_hf.processing import VallEProcessor
    from valle_hf.tokenization import tokenizer_fingerprint

    reactive_model().save_pretrained(tmp_path / "model")
    VallEProcessor.from_tokenizer_file().save_pretrained(tmp_path / "model")
    write_tiny_dataset(tmp_path / "data")
    finetune = load_script(REPO / "examples" / "finetune.py")
    monkeypatch.setattr(finetune.VallETrainer, "train", lambda self, **kwargs: None)  # the saving is what is tested
    final = finetune.train(list(map(str, ["--model", tmp_path / "model", "--data", tmp_path / "data", "--output",
                                          tmp_path / "out", "--prompt-duration", "0.2", "0.5"])))
    files = {path.name for path in final.iterdir()}
    processor = json.loads((final / "processor_config.json").read_text(encoding="utf-8"))
    named = [*processor["auto_map"].values(), *processor["feature_extractor"]["auto_map"].values()]
    imported = {match + ".py" for name in files if name.endswith(".py")
                for match in re.findall(r"^from \.(\w+) import", (final / name).read_text(encoding="utf-8"), re.M)}
    assert {name.split(".")[0] + ".py" for name in named} | imported <= files
    assert tokenizer_fingerprint(VallEProcessor.from_pretrained(final).tokenizer) == tokenizer_fingerprint(
        VallEProcessor.from_pretrained(tmp_path / "model").tokenizer)


def test_finetune_refuses_data_of_another_tokenizer_for_a_hub_model(tmp_path, monkeypatch):
    """The check that the data's phoneme ids are the model's read the tokenizer from a local folder only: for a Hub
    id it was skipped, and the model trained on ids that stand for other phonemes."""
    from valle_hf.dataset import PREPARE_CONFIG
    from valle_hf.errors import VallEValueError
    from valle_hf.processing import VallEProcessor

    hub_id, folder = "someone/valle", tmp_path / "model"
    reactive_model().save_pretrained(folder)
    VallEProcessor.from_tokenizer_file().save_pretrained(folder)
    write_tiny_dataset(tmp_path / "data")
    (tmp_path / "data" / PREPARE_CONFIG).write_text(json.dumps({"tokenizer_sha256": "0" * 64}))
    finetune = load_script(REPO / "examples" / "finetune.py")
    from_hub = VallEProcessor.from_pretrained.__func__
    monkeypatch.setattr(finetune, "load_model", lambda name, **kwargs: VallEForConditionalGeneration.from_pretrained(
        folder if name == hub_id else name))
    monkeypatch.setattr(finetune.VallEProcessor, "from_pretrained", classmethod(
        lambda cls, name, **kwargs: from_hub(cls, folder if name == hub_id else name, **kwargs)))
    monkeypatch.setattr("valle_hf.loading.check_reachable", lambda *args, **kwargs: False)  # the Hub answers
    monkeypatch.setattr(finetune.VallETrainer, "train", None)  # training must not start: a call would fail
    with pytest.raises(VallEValueError, match=f"prepared with another phoneme tokenizer than {hub_id}'s"):
        finetune.train(list(map(str, ["--model", hub_id, "--data", tmp_path / "data", "--output", tmp_path / "out",
                                      "--prompt-duration", "0.2", "0.5"])))


def test_finetune_refuses_a_hub_model_without_a_tokenizer_before_fetching_its_weights(tmp_path, monkeypatch,
                                                                                       converted_dir, capsys):
    """A Hub model without tokenizer.json was downloaded whole, then refused with "give it with --tokenizer", an
    option fine-tune does not have."""
    from conftest import served_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data")
    finetune = load_script(REPO / "examples" / "finetune.py")
    files = {path.name: path for path in converted_dir.iterdir() if path.is_file() and path.name != "tokenizer.json"}
    with served_hub(monkeypatch, {"someone/no-tokenizer": files}) as hub:
        status = finetune.main(list(map(str, ["--model", "someone/no-tokenizer", "--data", tmp_path / "data",
                                              "--output", tmp_path / "out", "--prompt-duration", "0.2", "0.5"])))
        downloaded = hub.downloads()
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: could not download the phoneme tokenizer of someone/no-tokenizer")
    assert "fine-tune a downloaded copy" in err and "--tokenizer" not in err and err.count("\n") == 1, err
    assert not [path for path in downloaded if path.endswith("model.safetensors")]
    assert not (tmp_path / "out").exists()


def test_finetune_refuses_data_of_another_codec(tmp_path, monkeypatch):
    """The data's codes came from another codec than the model's, and it trained on them without a word."""
    from valle_hf.dataset import PREPARE_CONFIG
    from valle_hf.errors import VallEValueError
    from valle_hf.processing import VallEProcessor

    folder = tmp_path / "model"
    reactive_model().save_pretrained(folder)
    VallEProcessor.from_tokenizer_file().save_pretrained(folder)
    write_tiny_dataset(tmp_path / "data")
    (tmp_path / "data" / PREPARE_CONFIG).write_text(json.dumps({"codec_codebooks_sha256": "0" * 64}))
    finetune = load_script(REPO / "examples" / "finetune.py")
    monkeypatch.setattr(finetune.VallETrainer, "train", None)  # training must not start: a call would fail
    with pytest.raises(VallEValueError, match=f"prepared with another codec than {folder}'s"):
        finetune.train(list(map(str, ["--model", folder, "--data", tmp_path / "data", "--output", tmp_path / "out",
                                      "--prompt-duration", "0.2", "0.5"])))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("recorded", ["codec", "tokenizer", "utterance", "positions", "prompt"])
def test_the_trainer_refuses_a_prepared_folder_the_model_cannot_train_on_before_its_first_step(tmp_path, recorded):
    """Through the Python API (the Trainer with the collator as its callback), data prepared with another codec or
    tokenizer than the model's trained without a word, and an utterance out of the model's vocabulary was refused by
    the batch that met it, mid-run, as "item 0 of the batch"; examples/finetune.py refused them before training."""
    from transformers import Trainer, TrainingArguments

    from valle_hf.codec import codebook_fingerprint
    from valle_hf.dataset import PREPARE_CONFIG, VallEDataset
    from valle_hf.errors import VallEValueError
    from valle_hf.processing import VallEProcessor
    from valle_hf.tokenization import tokenizer_fingerprint

    model, processor = reactive_model(), VallEProcessor.from_tokenizer_file()
    write_tiny_dataset(tmp_path / "data")
    same = {"codec_codebooks_sha256": codebook_fingerprint(model.codec_model),
            "tokenizer_sha256": tokenizer_fingerprint(processor.tokenizer)}
    other = {"codec": {"codec_codebooks_sha256": "0" * 64}, "tokenizer": {"tokenizer_sha256": "0" * 64}}
    (tmp_path / "data" / PREPARE_CONFIG).write_text(json.dumps({**same, **other.get(recorded, {})}))
    if recorded == "utterance":
        generator = torch.Generator().manual_seed(9)
        codes = random_item(generator, 4, 80)["audio_codes"]
        ids = torch.tensor([1, model.config.text_vocab_size, 2])  # one past the vocabulary
        file = save_utterance(tmp_path / "data", "spk9/utt0", ids, codes)
        append_manifest(tmp_path / "data", {"id": "spk9/utt0", "speaker": "spk9", "frames": 80, "file": file})
    steps = []

    class Counting(Trainer):
        def training_step(self, *args, **kwargs):
            steps.append(1)
            return super().training_step(*args, **kwargs)

    collator = VallEDataCollator(model.config)
    arguments = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2,
                                  report_to="none", use_cpu=True, save_strategy="no")
    longest = max(json.loads(line)["frames"] for line in (tmp_path / "data" / MANIFEST).read_text().splitlines())
    positions = model.config.max_position_embeddings
    if recorded == "positions":  # the longest utterance, with its stop token, one position past the model's
        model.config.max_position_embeddings = longest
    longest_prompt = (positions + 1.5) / model.config.frame_rate if recorded == "prompt" else 0.5
    trainer = Counting(model=model, args=arguments, train_dataset=VallEDataset(tmp_path / "data", (0.2,
                                                                                                   longest_prompt)),
                       data_collator=collator, callbacks=[collator], processing_class=processor)
    message = {"codec": "prepared with another codec", "tokenizer": "prepared with another phoneme tokenizer",
               "utterance": r"\(spk9/utt0\): input_ids must lie in",
               # named by its utterance, before the first step: not by the batch that meets it ("item 0 of the batch")
               "positions": rf"\(spk\d/utt\d\): codes is {longest + 1} long, and this model has positions for "
                            f"{longest}",
               "prompt": f"prompt_duration is {positions + 1} long"}[recorded]
    with pytest.raises(VallEValueError, match=message):
        trainer.train()
    assert steps == []
    (tmp_path / "data" / PREPARE_CONFIG).write_text(json.dumps(same))
    model.config.max_position_embeddings = positions
    if recorded not in ("utterance", "prompt"):  # the same codec and tokenizer, the model's positions: it trains
        Counting(model=model, args=arguments, train_dataset=VallEDataset(tmp_path / "data", (0.2, 0.5)),
                 data_collator=collator, callbacks=[collator], processing_class=processor).train()
        assert steps == [1]


def test_a_trainer_given_the_processor_leaves_the_models_token_ids_as_they_are(tmp_path):
    """transformers' Trainer sets a model's end, pad and start ids to its processing_class tokenizer's at train():
    the phoneme tokenizer's pad 0 and end 2 are audio codes to the AR, so generate refused to run after training and
    the saved checkpoint did not load."""
    from transformers import Trainer, TrainingArguments

    from valle_hf.dataset import VallEDataset
    from valle_hf.modeling import VallEForConditionalGeneration
    from valle_hf.processing import VallEProcessor

    model, processor = reactive_model(), VallEProcessor.from_tokenizer_file()
    write_tiny_dataset(tmp_path / "data")
    ids = {part: {name: getattr(getattr(model, part), name, None) for name in ("eos_token_id", "pad_token_id")}
           for part in ("config", "generation_config")}
    collator = VallEDataCollator(model.config)
    arguments = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2,
                                  report_to="none", use_cpu=True, save_strategy="no")
    trainer = Trainer(model=model, args=arguments, train_dataset=VallEDataset(tmp_path / "data", (0.2, 0.5)),
                      data_collator=collator, callbacks=[collator], processing_class=processor)
    with logged_warnings() as logged:
        trainer.train()
    assert "kept the model's own config.eos_token_id, config.pad_token_id" in logged.out
    assert {part: {name: getattr(getattr(model, part), name, None) for name in ("eos_token_id", "pad_token_id")}
            for part in ("config", "generation_config")} == ids
    assert not hasattr(model.config, "bos_token_id") and model.generation_config.bos_token_id is None
    model.eval().generate(**processor(["Hello."]), max_new_tokens=2, output_audio=False)
    trainer.save_model(str(tmp_path / "final"))
    VallEForConditionalGeneration.from_pretrained(tmp_path / "final")
    # a collator added after the Trainer was made (no on_init_end): the ids of the config it was made with
    later = Trainer(model=model.train(), args=arguments, train_dataset=VallEDataset(tmp_path / "data", (0.2, 0.5)),
                    data_collator=collator, processing_class=processor)
    later.add_callback(VallEDataCollator(model.config))
    later.train()
    assert {part: {name: getattr(getattr(model, part), name, None) for name in ("eos_token_id", "pad_token_id")}
            for part in ("config", "generation_config")} == ids
    assert not hasattr(model.config, "bos_token_id") and model.generation_config.bos_token_id is None


def test_an_evaluation_set_that_is_the_training_sets_own_instance_is_warned_about(tmp_path):
    """accelerate sets an evaluation set's epoch at each evaluation: the same instance as the training set changed
    the training prompts' key after it, and a resumed run no longer matched an uninterrupted one, without a word."""
    from transformers import Trainer, TrainingArguments

    from valle_hf.dataset import VallEDataset

    write_tiny_dataset(tmp_path / "data")
    model = reactive_model()
    arguments = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2,
                                  report_to="none", use_cpu=True, save_strategy="no", eval_strategy="steps",
                                  eval_steps=1)
    dataset = VallEDataset(tmp_path / "data", (0.2, 0.5))
    part = torch.utils.data.Subset(dataset, [0, 1])
    # accelerate sets the epoch of the evaluation set itself: a Subset has none to set (a random_split is fine)
    for training, evaluation, warned in ((dataset, VallEDataset(tmp_path / "data", (0.2, 0.5)), False),
                                         (dataset, dataset, True), (dataset, part, False), (part, dataset, True)):
        collator = VallEDataCollator(model.config)
        with logged_warnings() as logged:
            Trainer(model=model, args=arguments, train_dataset=training, eval_dataset=evaluation,
                    data_collator=collator, callbacks=[collator]).train()
        assert logged.out.count("the evaluation set is the training set's own") == warned
        assert logged.out.count("own VallEDataset instance") == warned


def test_finetune_takes_bf16_without_a_gpu(monkeypatch):
    """transformers refused --bf16 without a GPU unless told to train on the CPU."""
    finetune = load_script(REPO / "examples" / "finetune.py")
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    arguments = finetune.training_arguments(finetune.parse_args(["--model", "m", "--data", "d", "--output", "o",
                                                                 "--bf16"]))
    assert arguments.bf16 and arguments.use_cpu


def damaged_file(root: Path, record: dict) -> str:
    path = root / record["file"]
    path.write_bytes(path.read_bytes()[:-8])
    return f"{root / MANIFEST} line 1 ({record['id']}): {path} is damaged"


def record_without_frames(root: Path, record: dict) -> str:
    (root / MANIFEST).write_text(json.dumps({key: value for key, value in record.items() if key != "frames"}) + "\n" +
                                 "".join((root / MANIFEST).read_text(encoding="utf-8").splitlines(True)[1:]))
    return f"{root / MANIFEST} line 1 ({record['id']}): no 'frames'"


def text_without_eos(root: Path, record: dict) -> str:
    """An utterance written by other means than prepare_dataset.py, whose text ids miss their EOS: the first batch
    holding it refused it as "item 0 of the batch", without a word of which utterance it was."""
    from safetensors.torch import load_file, save_file

    path = root / record["file"]
    tensors = load_file(str(path))
    save_file({**tensors, "text_ids": tensors["text_ids"][:-1].clone()}, str(path))
    return f"{path} ({record['id']}): input_ids must be one text's phoneme ids from <bos>"


def codes_out_of_range(root: Path, record: dict) -> str:
    """An utterance whose codes were edited past EnCodec's codebooks: the first batch holding it refused it as "item 0
    of the batch", naming neither the file nor the fix, after training had started."""
    from safetensors.torch import load_file, save_file

    path = root / record["file"]
    tensors = load_file(str(path))
    codes = tensors["codes"].clone()
    codes[0, -1] = tiny_config().audio_vocab_size
    save_file({**tensors, "codes": codes}, str(path))
    return f"{path} ({record['id']}): codes must lie in 0..{tiny_config().audio_vocab_size - 1}"


@pytest.mark.parametrize("case", ["record_without_frames", "damaged_file", "text_without_eos", "codes_out_of_range",
                                  "prompt_duration_zero",
                                  "stt_without_text_head", "stt_audio_with_too_few_levels", "original_checkpoint"])
def test_finetune_refuses_what_would_fail_mid_training_before_it_starts(tmp_path, monkeypatch, capsys, case):
    """A record without frames (KeyError) and a file cut short (SafetensorError) were tracebacks, text ids without
    their EOS or codes past the codebooks were refused mid-run without naming their file; --prompt-duration 0 0
    and --tasks stt on a model without a text head or on data with fewer levels than STT reads failed only at the
    first training step; an original checkpoint as --model was called "not an original checkpoint"."""
    reactive_model(tiny_config(text_head=case != "stt_without_text_head")).save_pretrained(tmp_path / "model")
    data, prompt_duration, model, extra = tmp_path / "data", ["0.2", "0.5"], tmp_path / "model", []
    write_tiny_dataset(data, levels=tiny_config().stt_levels - 1 if case == "stt_audio_with_too_few_levels" else None)
    first = json.loads((data / MANIFEST).read_text(encoding="utf-8").splitlines()[0])
    if case == "record_without_frames":
        expected = record_without_frames(data, first)
    elif case == "damaged_file":
        expected = damaged_file(data, first)
    elif case == "text_without_eos":
        expected = text_without_eos(data, first)
    elif case == "codes_out_of_range":
        expected = codes_out_of_range(data, first)
    elif case == "prompt_duration_zero":
        prompt_duration = ["0", "0"]
        expected = "--prompt-duration 0 0: expected MIN MAX seconds, 0 <= MIN <= MAX, MAX at least one codec frame"
    elif case == "stt_without_text_head":
        expected = "tasks ['tts', 'stt'] include 'stt', but the model has no text head"
    elif case == "stt_audio_with_too_few_levels":
        expected = f"--tasks tts,stt: STT reads {tiny_config().stt_levels} RVQ levels of its audio and {data} holds"
    else:
        model = tmp_path / "fp32.sft"
        model.write_bytes(b"")
        expected = f"{model} is an original checkpoint, and a converted model is needed here: convert it first"
    finetune = load_script(REPO / "examples" / "finetune.py")
    monkeypatch.setattr(finetune.VallETrainer, "train", None)  # training must not start: a call would fail
    capsys.readouterr()
    argv = ["--model", model, "--data", data, "--output", tmp_path / "out", "--max-steps", "1", "--batch-size", "2",
            "--save-steps", "0", "--tasks", "tts,stt", "--prompt-duration", *prompt_duration, *extra]
    assert finetune.main(list(map(str, argv))) == 1
    err = capsys.readouterr().err  # after the model's loading bar, when it loads: one error line
    assert err.splitlines()[-1].startswith(f"error: {expected}") and err.count("error:") == 1, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_finetune_whose_weights_diverge_fails_instead_of_saving_them(tmp_path, capsys):
    """A learning rate far too high made the weights NaN: the Trainer logged the NaN losses as 0 and the script said
    "saved to .../final", exit status 0, for a model that could no longer speak."""
    reactive_model().save_pretrained(tmp_path / "model")
    write_tiny_dataset(tmp_path / "data")
    finetune = load_script(REPO / "examples" / "finetune.py")
    argv = ["--model", tmp_path / "model", "--data", tmp_path / "data", "--output", tmp_path / "out", "--max-steps",
            "2", "--batch-size", "2", "--gradient-accumulation-steps", "1", "--save-steps", "0", "--logging-steps", "1",
            "--learning-rate", "1e30", "--prompt-duration", "0.2", "0.5"]
    assert finetune.main(list(map(str, argv))) == 1
    err = capsys.readouterr().err
    assert "error: training diverged: at step " in err and err.count("error:") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out" / "final").exists()


@pytest.mark.parametrize("case", ["checkpoint_without_resume", "damaged_weights", "damaged_optimizer", "damaged_state",
                                  "foreign_state", "missing_weights"])
def test_finetune_refuses_checkpoints_it_would_overwrite_or_could_not_resume_from(tmp_path, monkeypatch, capsys, case):
    """An --output holding an earlier run's checkpoints, without --resume, was trained over: its checkpoint-N were
    overwritten and the rest rotated away. A checkpoint cut short (weights, optimiser, or trainer_state.json that is
    no JSON) was a SafetensorError or JSONDecodeError traceback from inside the Trainer, and a trainer_state.json with
    a field the Trainer does not know a TypeError; one without its weights a ValueError ("Can't find a checkpoint
    index")."""
    model = tmp_path / "model"
    reactive_model().save_pretrained(model)
    write_tiny_dataset(tmp_path / "data")
    checkpoint = tmp_path / "out" / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    weights = (model / "model.safetensors").read_bytes()
    damaged = {"damaged_weights": "model.safetensors", "damaged_optimizer": "optimizer.pt",
               "damaged_state": "trainer_state.json", "foreign_state": "trainer_state.json"}.get(case)
    (checkpoint / "model.safetensors").write_bytes(weights)
    torch.save({"state": {}}, checkpoint / "optimizer.pt")
    (checkpoint / "trainer_state.json").write_text("{}", encoding="utf-8")
    if case == "missing_weights":
        (checkpoint / "model.safetensors").unlink()
    elif case == "foreign_state":
        (checkpoint / damaged).write_text('{"no_such_field": 1}', encoding="utf-8")
    elif damaged:
        (checkpoint / damaged).write_bytes((checkpoint / damaged).read_bytes()[:-2])
    if case == "missing_weights":
        expected = f"--resume: {checkpoint / 'model.safetensors'} is missing ("
    elif damaged:
        expected = (f"--resume: {checkpoint / damaged} is damaged (")
    else:
        expected = f"--output {tmp_path / 'out'} already holds checkpoints of a run (checkpoint-1, ...): --resume"
    before = {path: path.read_bytes() for path in checkpoint.iterdir()}
    finetune = load_script(REPO / "examples" / "finetune.py")
    monkeypatch.setattr(finetune.VallETrainer, "train", None)  # training must not start: a call would fail
    argv = ["--model", model, "--data", tmp_path / "data", "--output", tmp_path / "out", "--prompt-duration", "0.2",
            "0.5", *([] if case == "checkpoint_without_resume" else ["--resume"])]
    capsys.readouterr()
    assert finetune.main(list(map(str, argv))) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1, err
    assert {path: path.read_bytes() for path in checkpoint.iterdir()} == before
