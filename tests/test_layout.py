"""The original's sequence layouts in the unified id space, padding, and its per-segment position ids."""

from __future__ import annotations

import pytest
import torch
from conftest import case_inputs, forward_cases, tiny_config

from valle_hf.layout import pad, segment_position_ids, stt_sequence, tts_sequence


@pytest.fixture(scope="module")
def config():
    return tiny_config()


def test_tts_sequence_joins_text_level_prompt_and_response_with_separators(config):
    sep, prompt, frame = config.separator_token_id, config.prompt_frame_token_id, config.audio_frame_token_id
    text = torch.tensor([1, 5, 2])
    words = [config.text_token_offset + t for t in (1, 5, 2)]
    ar = tts_sequence(config, text, 0, 4, torch.tensor([7, 8]))
    assert ar.tolist() == [*words, sep, config.level_token_offset, sep, *[prompt] * 4, sep, 7, 8]
    nar = tts_sequence(config, text, 3, 2, response_frames=3)
    assert nar.tolist() == [*words, sep, config.level_token_offset + 3, sep, prompt, prompt, sep, *[frame] * 3]
    # no prompt: no segment; an empty prompt (or response) still gets its separators
    no_prompt = tts_sequence(config, text, 0, None, torch.tensor([7]))
    assert no_prompt.tolist() == [*words, sep, config.level_token_offset, sep, 7]
    empty = tts_sequence(config, text, 0, 0, torch.zeros(0, dtype=torch.long))
    assert empty.tolist() == [*words, sep, config.level_token_offset, sep, sep]
    assert ar.dtype == torch.long


def test_stt_sequence_puts_the_audio_first(config):
    ids = stt_sequence(config, 3, torch.tensor([1, 9]))
    frame, sep = config.audio_frame_token_id, config.separator_token_id
    assert ids.tolist() == [frame, frame, frame, sep, config.level_token_offset, sep, 1, 9]


def test_pad_on_either_side_with_a_mask():
    rows = [torch.tensor([1, 2, 3]), torch.tensor([4])]
    padded, mask = pad(rows, 0)
    assert padded.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    padded, mask = pad(rows, -1, side="right")
    assert padded.tolist() == [[1, 2, 3], [4, -1, -1]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    codes = [torch.ones(2, 8, dtype=torch.long), torch.full((3, 8), 2)]
    padded, mask = pad(codes, 0, side="right")
    assert padded.shape == (2, 3, 8) and mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert torch.equal(padded[0, :2], codes[0]) and not padded[0, 2].any()
    with pytest.raises(ValueError, match="padding side"):
        pad(rows, 0, side="middle")


def test_position_ids_restart_per_segment(config):
    text = torch.tensor([1, 5, 2])
    ids = tts_sequence(config, text, 0, 4, torch.tensor([7, 8]))
    # text 0..2 + SEP 3, level 0 + SEP 1, prompt 0..3 + SEP 4, response 0..1
    assert segment_position_ids(ids[None], config)[0].tolist() == [0, 1, 2, 3, 0, 1, 0, 1, 2, 3, 4, 0, 1]
    nar = tts_sequence(config, text, 2, 2, response_frames=3)
    assert segment_position_ids(nar[None], config)[0].tolist() == [0, 1, 2, 3, 0, 1, 0, 1, 2, 0, 1, 2]
    # STT: the audio has no separator slot, so each separator after it opens the next range
    stt = stt_sequence(config, 3, torch.tensor([1, 9]))
    assert segment_position_ids(stt[None], config)[0].tolist() == [0, 1, 2, 0, 1, 0, 1, 2]


def test_padding_gets_position_one_and_moves_nothing_else(config):
    rows = [tts_sequence(config, torch.tensor([1, 5, 6, 2]), 0, 3, torch.tensor([7])),
            tts_sequence(config, torch.tensor([1, 2]), 0, 1, torch.tensor([7, 8, 9]))]
    for side in ("left", "right"):
        padded, mask = pad(rows, config.pad_token_id, side=side)
        positions = segment_position_ids(padded, config)
        for row, sequence in enumerate(rows):
            alone = segment_position_ids(sequence[None], config)[0]
            assert torch.equal(positions[row][mask[row].bool()], alone)
            assert (positions[row][~mask[row].bool()] == 1).all()


def test_unified_position_ids_count_the_real_tokens():
    config = tiny_config(unified_position_ids=True)
    rows = [tts_sequence(config, torch.tensor([1, 5, 2]), 0, 2, torch.tensor([7])), stt_sequence(config, 2,
                                                                                                 torch.tensor([1]))]
    padded, mask = pad(rows, config.pad_token_id)
    positions = segment_position_ids(padded, config)
    for row, sequence in enumerate(rows):
        assert positions[row][mask[row].bool()].tolist() == list(range(len(sequence)))
        assert (positions[row][~mask[row].bool()] == 1).all()


@pytest.mark.parametrize("unified", [False, True])
def test_a_response_fed_in_pieces_gets_the_positions_of_the_whole_sequence(unified):
    from valle_hf.layout import response_position_ids

    config = tiny_config(unified_position_ids=unified)
    for prompt_frames in (None, 0, 3):
        prefix = tts_sequence(config, torch.tensor([1, 5, 6, 2]), 2, prompt_frames, response_frames=0)
        whole = segment_position_ids(tts_sequence(config, torch.tensor([1, 5, 6, 2]), 2, prompt_frames,
                                                  response_frames=7)[None], config)[0]
        for start, count in ((0, 7), (0, 3), (3, 4), (6, 1)):
            expected = whole[len(prefix) + start: len(prefix) + start + count]
            assert torch.equal(response_position_ids(config, len(prefix), start, count), expected)


def test_sequences_and_positions_match_the_fixtures_recorded_ones(fixtures, fixture_model):
    """Every forward case of the fixture set: our layout of its inputs has the original's length and position ids."""
    cases = [case for case in forward_cases(fixtures) if "position_ids" in case["tensors"]]
    assert cases, "the fixture set records no position ids"
    for case in cases:
        ids, _ = case_inputs(fixtures, fixture_model, case)
        expected = fixtures.case_tensor(case, "position_ids")
        assert len(ids) == len(expected), case["name"]
        assert torch.equal(segment_position_ids(ids[None], fixture_model.config)[0], expected), case["name"]
        padded, mask = pad([ids, ids[: len(ids) // 2]], fixture_model.config.pad_token_id)  # left padding
        assert torch.equal(segment_position_ids(padded, fixture_model.config)[0], expected), case["name"]


def test_position_ids_do_not_depend_on_which_phonemes_the_text_holds(config):
    """Every text id is a text token, the first of the vocabulary (id 0, `<unk>`) as much as any other."""
    for text in (torch.tensor([1, 0, 2]), torch.tensor([0, 0, 0])):
        reference = torch.full_like(text, 5)
        for make in (lambda t: tts_sequence(config, t, 0, 4, torch.tensor([7, 8])),
                     lambda t: tts_sequence(config, t, 2, 2, response_frames=3), lambda t: stt_sequence(config, 3, t)):
            assert torch.equal(segment_position_ids(make(text)[None], config),
                               segment_position_ids(make(reference)[None], config))


def test_stt_positions_after_the_audio_do_not_depend_on_its_length(config):
    """A one-frame audio has no separator slot either: what follows it is numbered as after a longer one."""
    text = torch.tensor([1, 9, 2])
    after = [segment_position_ids(stt_sequence(config, frames, text)[None], config)[0, frames:].tolist()
             for frames in (1, 2, 5)]
    assert after[0] == after[1] == after[2]
