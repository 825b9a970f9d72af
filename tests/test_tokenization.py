"""The released phoneme tokenizer shipped with the package: ids as the original's, deterministic decoding."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from conftest import HELLO_IDS, HELLO_IPA, logged_warnings
from tokenizers import Tokenizer

from valle_hf.errors import CheckpointError
from valle_hf.phonemes import phonemize
from valle_hf.tokenization import (
    check_symmap,
    load_phoneme_tokenizer,
    packaged_tokenizer_file,
    saved_tokenizer,
    tokenizer_fingerprint,
)

TOKENIZER_FILE = packaged_tokenizer_file()


def test_tokenizer_round_trip_with_the_reference_file(processor):
    tokenizer = processor.tokenizer
    special_ids = (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert special_ids == (0, 1, 2, 0)
    assert tokenizer(HELLO_IPA)["input_ids"] == HELLO_IDS
    assert processor.decode(HELLO_IDS) == HELLO_IPA
    assert processor.decode(torch.tensor(HELLO_IDS[1:-1])) == HELLO_IPA
    assert processor.decode(HELLO_IDS, skip_special_tokens=False) == f"<bos>{HELLO_IPA}</eos>"
    assert processor.batch_decode(torch.tensor([HELLO_IDS, HELLO_IDS])) == [HELLO_IPA, HELLO_IPA]
    assert processor.decode(tokenizer.convert_tokens_to_ids(["h", "əl", "ˈoʊ", " ", "w"])) == "həlˈoʊ w"
    # the original's rule: "   " then " ", so two spaces read one
    assert processor.decode(tokenizer.convert_tokens_to_ids(["a", " ", " ", "b"])) == "a b"
    with pytest.raises(ValueError, match="0..255"):
        processor.decode([1, 300])
    with pytest.raises(ValueError, match="integer phoneme ids, got dtype torch.float32"):
        processor.decode([1.5, 2.7])  # read as no ids at all: ''
    assert processor.decode([]) == "" and processor.batch_decode([[], HELLO_IDS]) == ["", HELLO_IPA]


def _original_stt_join(tokens: list[str]) -> str:
    """The original's STT decoding (e-c-k-e-r/vall-e `vall_e/inference.py`), as it is written there."""
    return " ".join(tokens).replace("   ", "_").replace(" ", "").replace("_", " ")


def test_every_decoder_joins_phonemes_as_the_originals_stt_does(processor, tmp_path):
    """The tokenizers library's default decoder put a space between every two tokens: `AutoTokenizer`'s decode of a
    saved model's tokenizer printed "h əl ˈoʊ   w ˈɜː ld ." where the processor printed "həlˈoʊ wˈɜːld.". Runs of
    space tokens, and spaces at either end, are where joining tokens differs from the original's rule."""
    from transformers import AutoTokenizer

    from valle_hf.processing import VallEProcessor

    processor.save_pretrained(tmp_path / "new")
    saved = AutoTokenizer.from_pretrained(tmp_path / "new")
    shutil.copytree(tmp_path / "new", tmp_path / "old")  # saved before the decoder was: tokenizers' default one
    data = json.loads((tmp_path / "old" / "tokenizer.json").read_text())
    (tmp_path / "old" / "tokenizer.json").write_text(json.dumps({**data, "decoder": None}))
    processor = VallEProcessor.from_pretrained(tmp_path / "old")
    space = processor.tokenizer.convert_tokens_to_ids(" ")
    generator = torch.Generator().manual_seed(0)
    phonemes = torch.arange(4, len(processor.tokenizer))  # past the special tokens
    for _ in range(200):
        ids = phonemes[torch.randint(len(phonemes), (int(torch.randint(0, 12, (), generator=generator)),),
                                     generator=generator)]
        ids = torch.where(torch.rand(len(ids), generator=generator) < 0.4, space, ids).tolist()
        expected = _original_stt_join(processor.tokenizer.convert_ids_to_tokens(ids))
        assert processor.decode(ids) == expected == saved.decode(ids), processor.tokenizer.convert_ids_to_tokens(ids)
    for tokenizer in saved, load_phoneme_tokenizer():
        assert tokenizer.decode(HELLO_IDS, skip_special_tokens=True) == HELLO_IPA


@pytest.mark.parametrize("which", ["released", "tiny-random"])
def test_decoding_leaves_out_every_special_token_of_the_vocabulary(request, which):
    """The vocabulary marks `<mask>` special as well, but it is none of the named special tokens: decoding kept it,
    so a transcription the model wrote it into printed "<mask>" (the original's decode leaves it out); the tiny-random
    model's tokenizer marked it as nothing."""
    processor = request.getfixturevalue("processor" if which == "released" else "tiny_random")
    processor = processor if which == "released" else processor[1]
    tokenizer = processor.tokenizer
    assert tokenizer.convert_ids_to_tokens(3) == "<mask>"
    special = [index for index, token in tokenizer.added_tokens_decoder.items() if token.special]
    unnamed = sorted(set(special) - set(tokenizer.all_special_ids))
    assert unnamed, "the vocabulary should have a special token without a name (<mask>)"
    text = processor("hello world")["input_ids"][0, 1:-1].tolist()
    expected = processor.decode(text)
    assert processor.decode([*special, *text[:2], *unnamed, *text[2:], *special]) == expected
    kept = processor.decode(unnamed, skip_special_tokens=False)
    assert kept == "".join(tokenizer.convert_ids_to_tokens(unnamed)) and kept


def test_aliased_ids_decode_deterministically_with_unchanged_ids(processor):
    """The reference vocab gives several strings one id; ids must match the original file, decoding must not vary."""
    original = Tokenizer.from_file(str(TOKENIZER_FILE))
    aliased = "ä ɒ ĩ ũ ø œ y ɣ ʍ ɸ ɽ ʁ ɲ ɴ e̞ ᵝ {x} [y] ĩː"
    texts = [
        HELLO_IPA,
        aliased,
        phonemize("Guten Tag, schöne Welt!", "de"),
        phonemize("Une œuvre très réussie.", "fr"),
        phonemize("こんにちは、せかい", "ja"),
        "<bos>a<unk>b€",
    ]
    for text in texts:
        assert processor.tokenizer(text)["input_ids"] == original.encode(text).ids, text
    # one canonical string per id: a space stays a space (the original may print "ᵝ"), "w" stays "w" (not "ʍ")
    assert processor.decode([16, 4, 23, 4, 35, 4, 37, 4, 7, 8]) == "a i u w ()"


def test_load_phoneme_tokenizer_missing_file(tmp_path):
    """A misspelt model folder (scripts/prepare_dataset.py --tokenizer MODEL_DIR) was told to give a tokenizer.json
    only, though a folder is what it meant."""
    for missing in (tmp_path / "nothere.json", tmp_path / "valle-ar-nar-lama-8"):
        with pytest.raises(FileNotFoundError, match=rf"^tokenizer file not found: .*{missing.name} \(give the "
                                                    r"original's tokenizer.json, or a converted model's folder"):
            load_phoneme_tokenizer(missing)


@pytest.mark.parametrize("bad", ["string", "bool"])
@pytest.mark.parametrize("where", ["tokenizer", "symmap"])
def test_ids_that_are_not_integers_are_refused_naming_the_symbol(tmp_path, where, bad):
    """tokenizer.json and a checkpoint's symmap map symbols to integer ids: comparing the two failed with a TypeError
    when one held a string id. A boolean (an int to Python) is no id either."""
    data = json.loads(TOKENIZER_FILE.read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    symbol = sorted(vocab, key=vocab.get)[-1]
    wrong = {**vocab, symbol: str(vocab[symbol]) if bad == "string" else True}
    expected = re.escape(f"maps {symbol!r} to {wrong[symbol]!r}, not a symbol to an integer id")
    if where == "symmap":
        with pytest.raises(CheckpointError, match=f"fp32.sft's userdata.symmap {expected}"):
            check_symmap(TOKENIZER_FILE, wrong, "fp32.sft")
        return
    data["model"]["vocab"] = wrong
    file = tmp_path / "tokenizer.json"
    file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(CheckpointError, match=expected):
        check_symmap(file, vocab, "fp32.sft")
    with pytest.raises(CheckpointError, match=expected):
        load_phoneme_tokenizer(file)


def test_a_tokenizer_json_without_a_vocabulary_is_refused(tmp_path):
    """An empty model.vocab would read every text as <unk>: refused as not a tokenizer.json."""
    data = json.loads(TOKENIZER_FILE.read_text(encoding="utf-8"))
    data["model"]["vocab"], data["model"]["merges"] = {}, []
    file = tmp_path / "tokenizer.json"
    file.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CheckpointError, match="no model.vocab"):
        load_phoneme_tokenizer(file)


def test_a_tokenizer_json_that_is_not_utf8_is_refused(tmp_path):
    file = tmp_path / "tokenizer.json"
    file.write_bytes(b'{"model": "\xff\xfe"}')
    with pytest.raises(CheckpointError, match=r"is not a tokenizer.json \(not JSON text: UnicodeDecodeError\)"):
        load_phoneme_tokenizer(file)


def test_a_symmap_that_differs_in_several_symbols_is_refused_naming_the_one_of_the_lowest_id():
    """"the first difference": by id, whichever of the two files holds the lower one."""
    vocab = json.loads(TOKENIZER_FILE.read_text(encoding="utf-8"))["model"]["vocab"]
    by_id = sorted(vocab, key=vocab.get)
    # two symbols whose names sort the other way round from their ids: sorted by name, the other would be named
    first = next(symbol for symbol in by_id[10:] if symbol > by_id[-3])
    assert vocab[first] < vocab[by_id[-3]]
    symmap = {**vocab, first: vocab[first] + 1, by_id[-3]: vocab[by_id[-3]] + 1}
    with pytest.raises(CheckpointError, match=f"symbol {re.escape(repr(first))} has id {vocab[first]} in the "):
        check_symmap(TOKENIZER_FILE, symmap, "fp32.sft")


def test_the_tokenizer_itself_pads_on_the_right_with_unk():
    """Called directly (not through `tokenize_phonemes`), the tokenizer still pads after the text with id 0."""
    tokenizer = load_phoneme_tokenizer()
    short, long = tokenizer(["a", "ab ab"], padding=True)["input_ids"]
    mask = tokenizer(["a", "ab ab"], padding=True)["attention_mask"][0]
    assert len(short) == len(long) > 3
    assert short[:3] == [tokenizer.bos_token_id, tokenizer("a")["input_ids"][1], tokenizer.eos_token_id]
    assert short[3:] == [0] * (len(long) - 3) and mask == [1, 1, 1] + [0] * (len(long) - 3)


def test_a_converted_models_tokenizer_matches_the_checkpoint_it_came_from(fixtures, converted_dir, tmp_path):
    """A converted model's tokenizer.json (aliases folded by normalizers) was refused for its own checkpoint: "symbol
    'ᵝ' has id None in the tokenizer"."""
    from valle_hf.conversion import load_original_checkpoint

    symmap = load_original_checkpoint(fixtures.checkpoint).symmap
    if symmap is None:
        pytest.skip(f"{fixtures.checkpoint} records no tokenizer vocabulary (userdata.symmap)")
    saved = converted_dir / "tokenizer.json"
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert data["model"]["vocab"] != symmap, "the converted tokenizer is not de-aliased: nothing to test"
    check_symmap(saved, symmap, "fp32.sft")
    vocab = data["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[-2:]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(CheckpointError, match="does not match fp32.sft"):
        check_symmap(tmp_path / "tokenizer.json", symmap, "fp32.sft")


def test_a_model_folder_gives_the_tokenizer_it_holds(tiny_random, tmp_path):
    """A saved folder's tokenizer (the tiny model's, another vocabulary than the released one) is read from the
    folder; a folder without one has none to give."""
    tiny_random[1].save_pretrained(tmp_path / "model")
    saved = tokenizer_fingerprint(tiny_random[1].tokenizer)
    assert saved != tokenizer_fingerprint(load_phoneme_tokenizer())
    assert tokenizer_fingerprint(load_phoneme_tokenizer(tmp_path / "model")) == saved
    assert tokenizer_fingerprint(saved_tokenizer(tmp_path / "model")) == saved
    (tmp_path / "empty").mkdir()
    assert saved_tokenizer(tmp_path / "empty") is None
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_phoneme_tokenizer(tmp_path / "empty")


def test_control_tokens_written_in_the_text_are_text(processor):
    with logged_warnings() as logged:
        ids = processor(f"{HELLO_IPA} <bos> </eos>")["input_ids"][0].tolist()
    assert "no id for '/', '<', '>'" in logged.out  # the brackets have no id; the letters have
    assert ids[0] == processor.tokenizer.bos_token_id and ids[-1] == processor.tokenizer.eos_token_id
    assert processor.tokenizer.bos_token_id not in ids[1:] and processor.tokenizer.eos_token_id not in ids[:-1]


def test_symbols_without_an_id_are_named_in_a_warning(processor):
    from valle_hf.tokenization import tokenize_phonemes

    with logged_warnings() as logged:
        known = tokenize_phonemes(processor.tokenizer, [HELLO_IPA, HELLO_IPA[:4]])
    assert known["input_ids"][0] == HELLO_IDS and "no id" not in logged.out
    with logged_warnings() as logged:
        encoded = tokenize_phonemes(processor.tokenizer, ["ħaʕ", HELLO_IPA])
    assert "no id for 'ħ', 'ʕ'" in logged.out
    assert encoded["input_ids"][0][:5] == [1, 0, encoded["input_ids"][0][2], 0, 2]  # ħ a ʕ, padded after </eos>
    assert "offset_mapping" not in encoded


def test_dealiasing_keeps_a_normalizer_the_file_had_and_adds_the_aliases_after_it():
    """A tokenizer with its own normalizer (lowercasing): aliases are replaced after it, the ids are unchanged."""
    import json

    from valle_hf.tokenization import dealias_tokenizer_json

    vocab = {"<unk>": 0, "a": 1, "ä": 1, "b": 2}
    data = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer":
            {"type": "Lowercase"}, "pre_tokenizer": None, "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                      "merges": []}}
    rewritten = dealias_tokenizer_json(data, vocab)
    tokenizer = Tokenizer.from_str(json.dumps(rewritten))
    assert tokenizer.encode("ÄBa").ids == [1, 2, 1]  # lowercased, then "ä" read as "a"
    assert tokenizer.encode("äb").ids == Tokenizer.from_str(json.dumps(data)).encode("ab").ids
    assert tokenizer.get_vocab() == {"<unk>": 0, "a": 1, "b": 2}


def _bpe(vocab: dict[str, int], merges: list[str], model_type: str = "BPE") -> dict:
    """A tokenizer.json of `vocab` and `merges`, nothing else set."""
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": None, "post_processor": None, "decoder": None,
            "model": {"type": model_type, "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                      "merges": merges}}


def test_dealiasing_keeps_the_ids_of_entries_no_merge_reaches(tmp_path):
    """A multi-character alias no merge makes ("bc", an alias of "a") is no normalizer: text "bc" stays b, c; and an
    entry that holds an aliased character ("äb") keeps its own id, beside the entry it would fold to ("ab")."""
    from valle_hf.tokenization import dealias_tokenizer_json

    vocab = {"<unk>": 0, "a": 1, "ä": 1, "bc": 1, "b": 2, "c": 3, "äb": 4, "ab": 5}
    data = _bpe(vocab, [])
    rewritten = dealias_tokenizer_json(data, vocab)
    tokenizer, original = Tokenizer.from_str(json.dumps(rewritten)), Tokenizer.from_str(json.dumps(data))
    for text in ("bc", "äbc", "cab"):
        assert tokenizer.encode(text).ids == original.encode(text).ids, text
    del vocab["bc"]  # (check_symmap cannot tell which id a multi-character alias the rewrite dropped had)
    file = tmp_path / "tokenizer.json"
    file.write_text(json.dumps(dealias_tokenizer_json(_bpe(vocab, []), vocab), ensure_ascii=False), encoding="utf-8")
    check_symmap(file, vocab, "fp32.sft")  # the original vocab, aliases and all, is the rewritten one's


def test_a_normalizer_of_one_replace_rule_folds_its_alias_for_the_symmap_check(tmp_path):
    """A normalizer that is one `Replace` rule, not a `Sequence` of them (tokenizers reads either): the checkpoint's
    symmap entry for the symbol it folds has the id that symbol is read as, as through a `Sequence`."""
    vocab = {"<unk>": 0, "a": 1, "b": 2}
    data = _bpe(vocab, [])
    data["normalizer"] = {"type": "Replace", "pattern": {"String": "ä"}, "content": "a"}
    file = tmp_path / "tokenizer.json"
    file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert Tokenizer.from_file(str(file)).encode("ä").ids == [vocab["a"]]  # setup: the file reads "ä" as "a"
    check_symmap(file, {**vocab, "ä": vocab["a"]}, "fp32.sft")

@pytest.mark.parametrize(("model_type", "merges", "message"), [
    ("WordLevel", [], "aliased vocab entries but is not a BPE model"),
    ("BPE", ["ä b"], "merge 'ä' \\+ 'b' cannot be written without aliases"),  # its canonical pair "a b" makes "ab"
])
def test_a_tokenizer_that_cannot_be_written_without_aliases_is_refused(model_type, merges, message):
    from valle_hf.tokenization import dealias_tokenizer_json

    vocab = {"<unk>": 0, "a": 1, "ä": 1, "b": 2, "äb": 3}
    with pytest.raises(CheckpointError, match=message):
        dealias_tokenizer_json(_bpe(vocab, merges, model_type), vocab)
