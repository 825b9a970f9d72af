"""The phoneme tokenizer: IPA ↔ ids with the released model's BPE `tokenizer.json`, shipped with this package.

The original (e-c-k-e-r/vall-e) keeps its tokenizer in its source tree (`data/tokenizer.json`), not on the Hub, so
the package ships a copy (`assets/tokenizer.json`, with its attribution in `assets/TOKENIZER_NOTICE.md`). It wraps
every text in `<bos>`=1 … `</eos>`=2 and maps unknown characters to `<unk>`=0. Its vocabulary has aliases (several
symbols share one id), which the `tokenizers` library cannot round-trip, so it is loaded through an alias-free
rewrite with identical ids (`dealias_tokenizer_json`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .errors import CheckpointError, VallEFileNotFoundError, get_logger, one_line

logger = get_logger(__name__)

BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<bos>", "</eos>", "<unk>"
# The tokenizer's file, in the original's data folder and in a converted or saved model folder.
TOKENIZER_FILE = "tokenizer.json"

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "UNK_TOKEN",
    "PhonemeTokenizerFast",
    "check_saved_tokenizer",
    "check_symmap",
    "dealias_tokenizer",
    "load_phoneme_tokenizer",
    "packaged_tokenizer_file",
    "phoneme_ids",
    "prepare_backend",
    "saved_tokenizer",
    "tokenize_phonemes",
    "tokenizer_fingerprint",
    "use_phoneme_decoder",
]


def packaged_tokenizer_file() -> Path:
    """Path of the released model's `tokenizer.json` shipped inside the package."""
    return Path(str(resources.files("valle_hf") / "assets" / TOKENIZER_FILE))


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A phoneme tokenizer's identity: the SHA-256 of its vocabulary (symbol → id), so that two tokenizers with the
    same fingerprint give the same ids (a prepared data set records it as `tokenizer_sha256`)."""
    vocab = json.dumps(tokenizer.get_vocab(), sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(vocab).hexdigest()


# Marks the join's separators until the first is dropped: no phoneme token holds it.
_SEPARATOR = "\x01"


def use_phoneme_decoder(tokenizer: PreTrainedTokenizerBase) -> None:
    """Give a fast tokenizer's backend the decoder that joins phoneme tokens into IPA as the original's STT does
    (e-c-k-e-r/vall-e `vall_e/inference.py`, STT branch): join the tokens with spaces, then "   "→"_", " "→"", "_"→" ".
    A space token becomes "sep space sep", three spaces, so word spaces survive the removal of the separators (and two
    space tokens in a row read as one). The tokenizers library's default put a space between every two tokens; saved in
    tokenizer.json, the decoder serves `AutoTokenizer` too. In place; a tokenizer without a backend is left as it is."""
    from tokenizers import Regex, decoders

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return
    backend.decoder = decoders.Sequence([
        decoders.Replace(Regex("^"), _SEPARATOR), decoders.Fuse(), decoders.Strip(_SEPARATOR, 1, 0),  # the join
        decoders.Replace(_SEPARATOR, " "), decoders.Replace("   ", "_"), decoders.Replace(" ", ""),
        decoders.Replace("_", " "),
    ])


def prepare_backend(tokenizer: PreTrainedTokenizerBase) -> None:
    """A phoneme tokenizer's backend as this package reads it, in place: alias-free (`dealias_tokenizer`), decoding
    as the original's STT (`use_phoneme_decoder`)."""
    dealias_tokenizer(tokenizer)
    use_phoneme_decoder(tokenizer)


def _read_tokenizer_json(tokenizer_file: str | os.PathLike) -> dict[str, Any]:
    path = Path(tokenizer_file).expanduser()
    if not path.is_file():
        raise VallEFileNotFoundError(f"tokenizer file not found: {path} (give the original's tokenizer.json, or a "
                                     "converted model's folder, which holds one)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not a tokenizer.json (not JSON text: {error.__class__.__name__}); "
                              "give the original's data/tokenizer.json") from None
    vocab = data.get("model", {}).get("vocab") if isinstance(data, dict) else None
    if not isinstance(vocab, dict) or not vocab:
        raise CheckpointError(f"{path} is not a tokenizer.json (no model.vocab); give the original's "
                              "data/tokenizer.json")
    _check_ids(vocab, f"{path} (model.vocab)", "give the original's data/tokenizer.json")
    return data


def _check_ids(vocab: Mapping, where: str, fix: str) -> None:
    """Refuse a vocabulary that is not symbol (a string) -> id (an integer), as tokenizer.json and the original's
    symmap are: `check_symmap` orders and compares the ids, and the tokenizers library would fail on anything else."""
    for symbol, index in vocab.items():
        if not isinstance(symbol, str) or not isinstance(index, int) or isinstance(index, bool):
            raise CheckpointError(f"{where} maps {symbol!r} to {index!r}, not a symbol to an integer id: {fix}")


def check_symmap(tokenizer_file: str | os.PathLike, symmap: Mapping[str, int], checkpoint: str = "checkpoint") -> None:
    """Refuse a tokenizer whose vocabulary differs from a checkpoint's `userdata.symmap`, naming the first difference.

    The original exporter records the tokenizer vocabulary it trained with as `userdata.symmap` (`vall_e/export.py`),
    exactly as `tokenizer.json` holds it, aliases included, so the two must be equal entry for entry. A tokenizer.json
    a converted model saved (de-aliased, see `dealias_tokenizer_json`) is read with its aliases restored, so the
    tokenizer of a model converted from this checkpoint matches it. Raises `CheckpointError`.
    """
    data = _read_tokenizer_json(tokenizer_file)
    _check_ids(symmap, f"{checkpoint}'s userdata.symmap", "export the checkpoint again (vall_e.export)")
    vocab = _with_aliases(data, symmap)
    if dict(vocab) == dict(symmap):
        return
    def first_id(symbol: str) -> tuple[int, str]:
        return min(vocab.get(symbol, 1 << 30), symmap.get(symbol, 1 << 30)), symbol

    for symbol in sorted(set(vocab) | set(symmap), key=first_id):
        ours, theirs = vocab.get(symbol), symmap.get(symbol)
        if ours != theirs:
            raise CheckpointError(
                f"the tokenizer {tokenizer_file} does not match {checkpoint}: symbol {symbol!r} has id {ours} in the "
                f"tokenizer and {theirs} in the checkpoint's symmap; give the tokenizer.json the model was trained "
                "with (--tokenizer)"
            )


def _with_aliases(data: dict[str, Any], symmap: Mapping[str, int]) -> dict[str, int]:
    """A tokenizer.json's vocab, plus each symbol of `symmap` it folds into one of its entries by the `Replace`
    normalizers `dealias_tokenizer_json` writes: the id that symbol is read as. A raw file's vocab comes back as it
    is."""
    vocab = dict(data["model"]["vocab"])
    normalizer = data.get("normalizer") or {}
    rules = (normalizer.get("normalizers") or []) if normalizer.get("type") == "Sequence" else [normalizer]
    folds = {rule["pattern"]["String"]: rule["content"] for rule in rules
             if rule.get("type") == "Replace" and isinstance(rule.get("pattern"), dict) and "String" in rule["pattern"]}
    if not folds:
        return vocab
    for symbol in symmap:
        folded = "".join(folds.get(character, character) for character in symbol)
        if symbol not in vocab and folded in vocab:
            vocab[symbol] = vocab[folded]
    return vocab


def dealias_tokenizer_json(data: dict[str, Any], vocab: dict[str, int]) -> dict[str, Any] | None:
    """Rewrite a BPE tokenizer whose vocab maps several strings to one id into an equivalent alias-free one.

    The original vocab has aliases (" " and "ᵝ" are both 4; "a", "ä", "ɒ" are 16; ...). The `tokenizers` library
    keeps one string per id in a hash map whose order changes per process, so with aliases (1) id → token decoding
    is not deterministic (the original's STT can print "ᵝ" for a space, losing the word break) and (2) the file it
    saves is broken: aliases are dropped and merges are written with whichever alias won, naming tokens that are not
    in the vocab, so `save_pretrained` output cannot be loaded again. Here each id keeps one canonical string (the
    smallest, which is the first listed in the reference file) and the other single-character aliases become
    `Replace` normalizers. BPE merges act on ids, so the ids of every input are unchanged. Returns None when the
    vocab has no aliases.
    """
    groups: dict[int, list[str]] = {}
    for token, index in vocab.items():
        groups.setdefault(index, []).append(token)
    if all(len(tokens) == 1 for tokens in groups.values()):
        return None
    if data.get("model", {}).get("type") != "BPE":
        raise CheckpointError("the phoneme tokenizer has aliased vocab entries but is not a BPE model: cannot "
                              "rewrite it")
    canonical = {index: min(tokens) for index, tokens in groups.items()}
    merges = []
    for merge in data["model"]["merges"]:
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        left_id, right_id = vocab[left], vocab[right]
        merged_ids = {vocab[a + b] for a in groups[left_id] for b in groups[right_id] if a + b in vocab}
        if len(merged_ids) != 1 or canonical[left_id] + canonical[right_id] != canonical[merged_ids.pop()]:
            raise CheckpointError(f"the phoneme tokenizer's merge {left!r} + {right!r} cannot be written without "
                                  "aliases")
        merges.append([canonical[left_id], canonical[right_id]])
    replacements = []
    for index, tokens in sorted(groups.items()):
        for token in sorted(tokens):
            # multi-character aliases are only reached through merges, which now use the canonical strings
            if token != canonical[index] and len(token) == 1:
                replacements.append({"type": "Replace", "pattern": {"String": token}, "content": canonical[index]})
    rewritten = json.loads(json.dumps(data))
    rewritten["model"]["vocab"] = {canonical[index]: index for index in sorted(canonical)}
    rewritten["model"]["merges"] = merges
    previous = [data["normalizer"]] if data.get("normalizer") else []
    rewritten["normalizer"] = {"type": "Sequence", "normalizers": previous + replacements}
    return rewritten


def dealias_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Swap a fast tokenizer's backend for its alias-free equivalent (see `dealias_tokenizer_json`), in place."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return
    rewritten = dealias_tokenizer_json(json.loads(backend.to_str()), backend.get_vocab(with_added_tokens=False))
    if rewritten is not None:
        tokenizer._tokenizer = Tokenizer.from_str(json.dumps(rewritten, ensure_ascii=False))


def load_phoneme_tokenizer(tokenizer_file: str | os.PathLike | None = None) -> PreTrainedTokenizerFast:
    """A phoneme BPE tokenizer as a `PreTrainedTokenizerFast`: `<bos>`=1, `</eos>`=2, `<unk>`=0.

    `tokenizer_file`: an original `tokenizer.json`, or a model folder holding one (a converted or saved model); None
    takes the released model's, shipped with the package. The file's own post-processor adds `<bos>` … `</eos>`
    around every text, exactly as in the original. Padding is on the right with id 0 (`<unk>`, as the vocab has no
    pad token; the attention mask tells padding apart). The backend is made alias-free, with identical ids (see
    `dealias_tokenizer_json`). Raises `VallEFileNotFoundError` for a missing file and `CheckpointError` for a file
    that is not a tokenizer.
    """
    path = packaged_tokenizer_file() if tokenizer_file is None else Path(tokenizer_file).expanduser()
    if path.is_dir():
        path = path / TOKENIZER_FILE
    _read_tokenizer_json(path)
    try:
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_file=str(path),
            bos_token=BOS_TOKEN,
            eos_token=EOS_TOKEN,
            unk_token=UNK_TOKEN,
            pad_token=UNK_TOKEN,
            padding_side="right",
            model_input_names=["input_ids", "attention_mask"],
        )
    except Exception as error:  # the tokenizers library raises a bare Exception for a malformed file
        reason = one_line(error, 200)
        raise CheckpointError(f"{path} could not be read as a tokenizer ({reason})") from None
    prepare_backend(tokenizer)
    return tokenizer


def saved_tokenizer(model_dir: str | os.PathLike) -> PreTrainedTokenizerFast | None:
    """The phoneme tokenizer a model folder holds (its `tokenizer.json`, see `load_phoneme_tokenizer`), or None where
    there is none: a Hub id, a folder saved without its processor."""
    file = Path(model_dir) / TOKENIZER_FILE
    return load_phoneme_tokenizer(file) if file.is_file() else None


def check_saved_tokenizer(name: str | os.PathLike, subfolder: str | None = None) -> None:
    """Refuse (`CheckpointError`, saying how to add one) a local model folder (or its `subfolder`) without the
    phoneme tokenizer's file: transformers said only that it "couldn't instantiate the backend tokenizer", naming
    sentencepiece and tiktoken. A Hub id, or anything that is no folder, passes (its loader reports it)."""
    folder = Path(name, subfolder or "")
    if folder.is_dir() and not (folder / TOKENIZER_FILE).is_file():
        raise CheckpointError(f"{folder} has no {TOKENIZER_FILE}, so it holds no phoneme tokenizer: save the "
                              "processor there (processor.save_pretrained(folder); a Trainer does with "
                              "processing_class=processor), or build one from the released model's tokenizer "
                              "(VallEProcessor.from_tokenizer_file(); a pipeline takes it as processor=, with its "
                              ".tokenizer as tokenizer= and, for speech recognition, its .feature_extractor as "
                              "feature_extractor=)")


class PhonemeTokenizerFast(PreTrainedTokenizerFast):
    """What `AutoTokenizer` (and so `pipeline`) loads for a VALL-E model folder that names no tokenizer class, such as
    one saved without its processor: its `tokenizer.json` as a `PreTrainedTokenizerFast`, or, where the file is
    missing, the `CheckpointError` of `check_saved_tokenizer`."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> PreTrainedTokenizerFast:
        check_saved_tokenizer(pretrained_model_name_or_path, kwargs.get("subfolder"))
        return PreTrainedTokenizerFast.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)


def tokenize_phonemes(tokenizer: PreTrainedTokenizerBase, phonemes: Sequence[str], padding: bool | str = True):
    """IPA strings → `input_ids` and `attention_mask` (`<bos>` … `</eos>`, right-padded with id 0 when `padding`).

    Everything in the text is text: `<bos>` or `</eos>` written inside it are read as characters, never as control
    ids. Symbols with no id become `<unk>` (id 0), as in the original; a warning names them (e.g. Vietnamese tones,
    "ħ", "ʕ"), since the model hears nothing for them.
    """
    encoded, unknown = _encoded(tokenizer, phonemes, padding)
    if unknown:
        logger.warning(f"the phoneme tokenizer has no id for {', '.join(map(repr, unknown))}: read as <unk> "
                       "(the model was not trained on these symbols)")
    return encoded


def phoneme_ids(tokenizer: PreTrainedTokenizerBase, phonemes: str) -> tuple[list[int], list[str]]:
    """The ids of one IPA string, as `tokenize_phonemes` gives them, and the symbols in it that have no id (read as
    `<unk>`), sorted (none: []), for a caller that refuses those instead of warning."""
    encoded, unknown = _encoded(tokenizer, [phonemes], padding=False)
    return encoded["input_ids"][0], unknown


def _encoded(tokenizer: PreTrainedTokenizerBase, phonemes: Sequence[str], padding: bool | str):
    """`tokenizer`'s encoding of `phonemes` (ids and attention mask) and the parts of them it read as `<unk>`."""
    encoded = tokenizer(list(phonemes), padding=padding, padding_side="right", return_attention_mask=True,
                        return_token_type_ids=False, split_special_tokens=True, return_offsets_mapping=True)
    unknown = sorted({
        text[start:end]
        for text, ids, spans in zip(phonemes, encoded["input_ids"], encoded.pop("offset_mapping"), strict=True)
        for index, (start, end) in zip(ids, spans, strict=True)
        if index == tokenizer.unk_token_id and end > start
    })
    return encoded, unknown
