"""The VALL-E processor: text → phoneme ids (`phonemes`, `tokenization`), reference audio → 24 kHz waveforms (the
feature extractor), speech-to-text ids → IPA, and waveforms → files (`save_audio`). The codec runs inside the model;
the processor only prepares what `generate` reads."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, PreTrainedTokenizerBase, ProcessorMixin

from .audio import as_samples, encoded_audio, write_encoded
from .errors import VallETypeError, VallEValueError, is_integer_tensor, shown, with_hints
from .feature_extraction import VallEFeatureExtractor, check_prompt_for_texts, check_return_tensors, check_stackable
from .files import check_output_folder
from .hub import check_model_name, check_reachable
from .phonemes import phonemize, phonemize_all
from .tokenization import (
    BOS_TOKEN,
    EOS_TOKEN,
    TOKENIZER_FILE,
    UNK_TOKEN,
    check_saved_tokenizer,
    load_phoneme_tokenizer,
    prepare_backend,
    tokenize_phonemes,
)

__all__ = ["VallEProcessor"]


def _saved_before_the_feature_extractor(processor_dict: dict | None) -> bool:
    """Whether a saved processor's `processor_config.json` (read as `processor_dict`) is one written before the
    processor had a feature extractor: it names none."""
    return processor_dict is not None and "feature_extractor" not in processor_dict


def _name_special_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    """Name the phoneme vocabulary's `<unk>`, `<bos>` and `</eos>` where the tokenizer knows none, as
    `load_phoneme_tokenizer` does: one read from a folder or Hub upload with tokenizer.json but no
    tokenizer_config.json has no special tokens, so it could not pad a batch and decoding printed `<bos>` and
    `</eos>`."""
    vocab = tokenizer.get_vocab()
    for name, token in (("unk_token", UNK_TOKEN), ("bos_token", BOS_TOKEN), ("eos_token", EOS_TOKEN)):
        if getattr(tokenizer, name) is None and token in vocab:
            setattr(tokenizer, name, token)


# Where a speech-to-text result's phoneme ids are: transformers' habit, `batch_decode(out.sequences)`, reads the AR's
# whole sequence, whose audio positions are no phoneme ids.
_STT_IDS = ("STT's phoneme ids are what generate(task='stt') returns, or the `text_ids` of its output with "
            "return_dict_in_generate=True (its `sequences` is the model's whole sequence, audio positions included)")


def _check_not_an_output(ids: Any, method: str, shape: str) -> None:
    """Refuse (`VallETypeError`) a `generate` output object (or a dict of one) given to `method` for its phoneme ids
    (`shape`), naming where they are: iterated, it gave its field names as texts."""
    if isinstance(ids, Mapping):
        raise VallETypeError(f"{method} takes phoneme ids ({shape}), got a {type(ids).__name__}: {_STT_IDS}")


# What `__call__` returns as given, not as tensors: waveforms of different lengths, a rate and a length in seconds
_NOT_TENSORS = ("prompt_audio", "audio", "sampling_rate", "input_prompt_length")


def _check_request(text: Any, prompt_audio: Any, audio: Any, return_tensors: str | None, padding: bool | str,
                   return_attention_mask: bool | None) -> None:
    """Refuse unknown output options, and a call that asks for neither task or mixes them: TTS reads `text` (and
    `prompt_audio`), STT reads `audio`."""
    check_return_tensors(return_tensors)
    if padding not in (True, False, "longest", "do_not_pad"):
        raise VallEValueError(f"padding must be True, False, 'longest' or 'do_not_pad', got {padding!r}")
    if return_attention_mask is not None and not isinstance(return_attention_mask, bool):
        raise VallEValueError(f"return_attention_mask must be True, False or None, got {return_attention_mask!r}")
    if text is None and audio is None:
        raise VallEValueError("give `text` (text-to-speech, with optional `prompt_audio`) or `audio` "
                              "(speech-to-text)")
    if text is not None and audio is not None:
        raise VallEValueError("`text` (TTS) and `audio` (STT) are exclusive; a TTS voice prompt goes in "
                              "`prompt_audio`")
    if audio is not None and prompt_audio is not None:
        raise VallEValueError("`prompt_audio` is for text-to-speech; speech-to-text takes `audio` only")


def _unexpected(names: list[str]) -> str:
    """The names a processor call does not take, each with the argument it most likely misspells, and those it
    takes (its signature's, less `processor_kwargs` and `**kwargs`, which only carry them): a typo such as `langauge`
    names its fix."""
    takes = [name for name in inspect.signature(VallEProcessor.__call__).parameters
             if name not in ("self", "processor_kwargs", "kwargs")]
    return f"{with_hints(names, takes)}; it takes {', '.join(takes)}"


class VallEProcessor(ProcessorMixin):
    """Turns text into phoneme ids and prompt / STT audio into 24 kHz waveforms, and STT ids back into IPA.

    It holds the phoneme tokenizer and the feature extractor (`VallEFeatureExtractor`: audio at any sampling rate →
    the model's); the codec runs inside the model. `save_pretrained` / `from_pretrained` store it beside the model
    (tokenizer.json, tokenizer_config.json, processor_config.json with the feature extractor's settings).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, feature_extractor: VallEFeatureExtractor | None = None,
                 chat_template: str | None = None):
        """Wrap a phoneme tokenizer and a feature extractor (default: 24 kHz, the codec's rate). A fast tokenizer read
        straight from the original (aliased) `tokenizer.json` has its backend swapped in place for the alias-free
        equivalent (same ids), which decodes as the original's STT (`prepare_backend`), and a missing pad token
        becomes `<unk>` (id 0)."""
        prepare_backend(tokenizer)
        _name_special_tokens(tokenizer)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token
        feature_extractor = feature_extractor if feature_extractor is not None else VallEFeatureExtractor()
        super().__init__(tokenizer, feature_extractor, chat_template=chat_template)

    @classmethod
    def from_tokenizer_file(cls, tokenizer_file: str | os.PathLike | None = None) -> VallEProcessor:
        """Build the processor from an original `tokenizer.json` (default: the released one shipped with the
        package; see `load_phoneme_tokenizer`)."""
        return cls(load_phoneme_tokenizer(tokenizer_file))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> VallEProcessor:
        """`ProcessorMixin.from_pretrained`. Raises `CheckpointError` for a local folder (or its `subfolder`) without
        the tokenizer, saying how to get one there: transformers said it "couldn't instantiate the backend tokenizer"
        (a Trainer's checkpoint folder holds the processor only when the Trainer was given it). A name that is no
        existing path nor Hub id, or no str or os.PathLike, is refused as `from_pretrained` of the model refuses it
        (`check_model_name`). A Hub id whose tokenizer cannot be had is refused at once (`ModelNotFoundError`), and
        one whose Hub is out of reach is read from the cache (transformers retried each file for half a minute)."""
        pretrained_model_name_or_path = check_model_name(pretrained_model_name_or_path, "the processor")
        check_saved_tokenizer(pretrained_model_name_or_path, kwargs.get("subfolder"))
        name = str(pretrained_model_name_or_path)
        if not Path(name).exists() and "local_files_only" not in kwargs and check_reachable(
                name, TOKENIZER_FILE, f"the phoneme tokenizer of {name}", "a converted model holds its phoneme "
                "tokenizer: try again when the Hub answers, or load a local copy of the model's folder", **kwargs):
            kwargs["local_files_only"] = True  # cached, the Hub out of reach: transformers retried it for minutes
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`ProcessorMixin.save_pretrained`, with `save_directory` checked first (`check_output_folder`,
        `UsageError`): a file there failed with a bare FileExistsError."""
        check_output_folder(save_directory, "save_directory")
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """The tokenizer and the feature extractor as saved (transformers 5.24 and earlier). Directories converted
        before the processor had a feature extractor get the default one: it has no learned state, and its settings
        are the codec's."""
        if not _saved_before_the_feature_extractor(processor_dict):
            return super()._get_arguments_from_pretrained(pretrained_model_name_or_path, processor_dict, **kwargs)
        tokenizer = cls._load_tokenizer_from_pretrained("tokenizer", pretrained_model_name_or_path,
                                                        subfolder=kwargs.pop("subfolder", ""), **kwargs)
        return [tokenizer, VallEFeatureExtractor()]

    @classmethod
    def _resolve_subprocessors(cls, pretrained_model_name_or_path, processor_dict, **kwargs):
        """`_get_arguments_from_pretrained` for transformers 5.25 and later, which keep a sub-processor already in
        `processor_dict` as it is: a directory converted before the feature extractor is given the default one (in
        the keyword arguments it would also reach the tokenizer's, and be saved in its config)."""
        if _saved_before_the_feature_extractor(processor_dict):
            processor_dict = {**processor_dict, "feature_extractor": VallEFeatureExtractor()}
        return super()._resolve_subprocessors(pretrained_model_name_or_path, processor_dict, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "prompt_audio", "audio", "sampling_rate"]

    # ------------------------------------------------------------------ text
    def phonemize(self, text: str | Sequence[str], language: str = "en") -> str | list[str]:
        """`phonemize` for one text or a list of texts (`phonemize_all`: their emoji named in one warning)."""
        if isinstance(text, str):
            return phonemize(text, language)
        return phonemize_all(list(text), [language] * len(text))

    def decode(self, token_ids: Any, skip_special_tokens: bool = True, **kwargs) -> str:
        """Phoneme ids (one sequence) → IPA string, deterministically, by the original STT's rule
        (`use_phoneme_decoder`).

        Special ids (`<unk>`, `<bos>`, `</eos>`, `<mask>`) are left out unless `skip_special_tokens=False`. Raises
        `VallETypeError` for what holds no ids (a text; a `generate` output object, naming where its ids are) and
        `VallEValueError` for ids out of the vocabulary or not one sequence.
        """
        if kwargs:
            raise VallETypeError(f"VallEProcessor.decode got unexpected arguments: {sorted(kwargs)}")
        _check_not_an_output(token_ids, "decode", "a tensor or a list of integers")
        try:
            ids = torch.as_tensor(token_ids)
        except (TypeError, RuntimeError, ValueError):  # torch's "new(): invalid data type 'str'", for a text
            raise VallETypeError(f"decode takes phoneme ids (a tensor or a list of integers), got "
                                 f"{type(token_ids).__name__} ({shown(token_ids):.60})") from None
        if ids.ndim > 1:
            raise VallEValueError(f"decode takes one sequence of ids, got shape {tuple(ids.shape)}: use batch_decode")
        if ids.numel() and not is_integer_tensor(ids):
            raise VallEValueError(f"decode takes integer phoneme ids, got dtype {ids.dtype}")
        ids = ids.reshape(-1).tolist()
        vocab_size = len(self.tokenizer)
        if any(not 0 <= index < vocab_size for index in ids):
            raise VallEValueError(f"phoneme ids must lie in 0..{vocab_size - 1}, got {min(ids)}..{max(ids)}: "
                                  f"{_STT_IDS}")
        if skip_special_tokens:  # every token the vocabulary marks special: `<mask>` has no name among them
            special = set(self.tokenizer.all_special_ids) | {
                index for index, token in self.tokenizer.added_tokens_decoder.items() if token.special}
            ids = [index for index in ids if index not in special]
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        """`decode` for each row of a 2-D tensor or list of sequences. Raises `VallEValueError` for one sequence (a
        1-D tensor or a list of integers), whose ids would each be decoded as a text of their own, and
        `VallETypeError` for a `generate` output object (or a dict of one), naming where its phoneme ids are."""
        _check_not_an_output(sequences, "batch_decode", "[batch, length]")
        if (torch.is_tensor(sequences) and sequences.ndim < 2) or any(
                isinstance(row, (int, np.integer)) for row in sequences):
            raise VallEValueError("batch_decode takes a batch of sequences ([batch, length]), got one sequence: use "
                                  "decode")
        return [self.decode(row, skip_special_tokens=skip_special_tokens, **kwargs) for row in sequences]

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        prompt_audio: Any = None,
        audio: Any = None,
        language: str | Sequence[str] = "en",
        language_switch: str = "keep",
        input_prompt_length: float | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        sampling_rate: int | None = None,
        return_attention_mask: bool | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Prepare a TTS batch (`text`, optional `prompt_audio`) or an STT batch (`audio`).

        TTS: `text` is a str or a list of str (one row each), phonemised in `language` (one code for all rows, or a
        list with one per row; see `phonemize`, also for `language_switch`) unless already IPA. Returns `input_ids`
        and `attention_mask`: the phoneme ids with `<bos>`=1 … `</eos>`=2, right-padded with id 0 (mask 0) when
        `padding` is True/"longest" (`tokenize_phonemes`: symbols with no id are named in a warning).
        `prompt_audio` (optional) is either one prompt for all rows or a list with one prompt per row; a prompt is
        anything `VallEFeatureExtractor.load` accepts (to join several references for a row, join the paths with ';'
        or nest them in a list). It comes back as `prompt_audio`: one list of whole 1-D float32 waveforms per row at
        the feature extractor's 24 kHz, given in `sampling_rate` (the same list object for every row when one prompt
        was broadcast, so the model encodes it once).
        `input_prompt_length` (seconds) is not applied here: it is passed through to `generate` in the output, which
        loops or trims the prompt's *codes*, as the original does.
        STT: `audio` is one source or a list with one source per row; it comes back as `audio`, one list of whole
        waveforms per row (the original's silent loop/cut to exactly 5 s is not done).
        `sampling_rate` is the rate (Hz) of array inputs: required with arrays (refused without, as a wrong guess
        changes the voice silently), resampled when it is not 24 kHz; files carry their own.
        `return_attention_mask`: False leaves the TTS `attention_mask` out (`generate` then refuses padded rows, as it
        cannot tell their padding); True or None returns it. STT's waveforms come whole, with no mask either way.
        `processor_kwargs`: a dict of these arguments, merged in.
        Works as the text-to-speech pipeline calls it, `processor(list_of_texts, processor_kwargs=..., return_tensors=
        "pt")` (transformers passes the pipeline's `processor_kwargs` as one dict), so `tts(text, processor_kwargs=
        {"language": "fr", "prompt_audio": path, "input_prompt_length": 3.0})` works.
        """
        if processor_kwargs:
            arguments = dict(text=text, prompt_audio=prompt_audio, audio=audio, language=language,
                             language_switch=language_switch, input_prompt_length=input_prompt_length,
                             return_tensors=return_tensors, padding=padding, sampling_rate=sampling_rate,
                             return_attention_mask=return_attention_mask)
            unknown = sorted(set(processor_kwargs) - set(arguments))
            if unknown:
                raise VallETypeError(f"VallEProcessor got unexpected processor_kwargs: {_unexpected(unknown)}")
            return self(**{**arguments, **processor_kwargs}, **kwargs)
        if kwargs:
            raise VallETypeError(f"VallEProcessor got unexpected arguments: {_unexpected(sorted(kwargs))}")
        _check_request(text, prompt_audio, audio, return_tensors, padding, return_attention_mask)
        prompt_audio, audio = as_samples(prompt_audio), as_samples(audio)  # a list of samples is no list of rows
        if audio is not None:
            data = self._audio_to_transcribe(audio, sampling_rate)
        else:
            data = self._phoneme_ids(text, language, language_switch, padding, return_tensors)
            if return_attention_mask is False:
                del data["attention_mask"]
            data.update(self._voice_prompt(prompt_audio, input_prompt_length, len(data["input_ids"]), sampling_rate))
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=list(_NOT_TENSORS))

    def _audio_to_transcribe(self, audio: Any, sampling_rate: int | None) -> dict[str, Any]:
        """STT: `audio` (one source or a list, one per row) as one list of whole waveforms per row, at 24 kHz."""
        rows = audio if isinstance(audio, (list, tuple)) else [audio]
        if not rows:
            raise VallEValueError("audio is an empty list")
        waveforms = [self.feature_extractor.load(source, sampling_rate, to_transcribe=True) for source in rows]
        return {"audio": waveforms, "sampling_rate": self.feature_extractor.sampling_rate}

    def _phoneme_ids(self, text: str | Sequence[str], language: str | Sequence[str], language_switch: str,
                     padding: bool | str, return_tensors: str | None) -> dict[str, Any]:
        """TTS: `input_ids` and `attention_mask` of each text (one row each, as lists), phonemised in its language."""
        if not isinstance(text, (str, list, tuple)) or not all(isinstance(item, str) for item in text):
            raise VallETypeError(f"text must be a str or a list of str, got {text!r:.80}")
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise VallEValueError("text is an empty list")
        languages = [language] * len(texts) if isinstance(language, str) else language
        if not isinstance(languages, (list, tuple)) or not all(isinstance(item, str) for item in languages):
            raise VallETypeError(f"language must be a language code (str) or a list of them, got {language!r:.80}")
        if len(languages) != len(texts):
            raise VallEValueError(f"got {len(languages)} languages for {len(texts)} texts: give one, or one per text")
        phonemes = phonemize_all(texts, languages, language_switch)  # a text with nothing to speak named by its number
        encoded = tokenize_phonemes(self.tokenizer, phonemes, padding)
        check_stackable([len(ids) for ids in encoded["input_ids"]], padding, return_tensors, "texts", "phoneme ids")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _voice_prompt(self, prompt_audio: Any, input_prompt_length: float | None, num_rows: int,
                      sampling_rate: int | None) -> dict[str, Any]:
        """TTS: the prompt's waveforms per row and their rate (none without a prompt), and `input_prompt_length`
        passed through untouched for `generate`, which applies it to the prompt's codes."""
        data = {}
        if prompt_audio is not None:
            data["prompt_audio"] = self._prompts_per_row(prompt_audio, num_rows, sampling_rate)
            data["sampling_rate"] = self.feature_extractor.sampling_rate
        if input_prompt_length is not None:
            data["input_prompt_length"] = input_prompt_length
        return data

    def _prompts_per_row(self, prompt_audio: Any, num_rows: int, sampling_rate: int | None) -> list[list[torch.Tensor]]:
        """One prompt (broadcast: loaded once, the same list for every row) or a list of exactly one prompt per row."""
        if isinstance(prompt_audio, (list, tuple)) and len(prompt_audio) != 1:
            if len(prompt_audio) != num_rows:
                raise VallEValueError(
                    f"prompt_audio is a list of {len(prompt_audio)} prompts for {num_rows} texts: give one prompt, "
                    f"or one per text (join several references for one text with ';' or nest them in a list)"
                )
            return [self.feature_extractor.load(source, sampling_rate) for source in prompt_audio]
        if isinstance(prompt_audio, (list, tuple)):
            prompt_audio = prompt_audio[0]
        else:  # a list of one prompt says it is one voice; a bare [2, samples] array does not
            check_prompt_for_texts(prompt_audio, num_rows)
        return [self.feature_extractor.load(prompt_audio, sampling_rate)] * num_rows

    # ------------------------------------------------------------------ audio out
    def save_audio(self, audio: Any, saving_path: str | os.PathLike | Sequence[str | os.PathLike],
                   sampling_rate: int | None = None) -> list[Path]:
        """Write waveforms to files, each whole or not at all (`valle_hf.audio.save_audio`; format by extension).

        `audio`: one 1-D float waveform (tensor or array) or a list of them, as `generate` returns; `saving_path`:
        one path, or one per waveform. `sampling_rate` defaults to the feature extractor's (24 kHz, the model's).
        Every file is checked and encoded before any is written (`valle_hf.audio.encoded_audio`: a path, a waveform or
        a rate refused writes none). Returns the paths written. Raises `VallETypeError` for audio that is no waveform
        or list, `VallEValueError` when the counts differ, two waveforms share a path, or a path, waveform or rate is
        refused, and `OutputError` for a rate the format does not take or a failed write (the files before it are
        written).
        """
        if isinstance(audio, (torch.Tensor, np.ndarray)):
            waveforms = [audio]
        elif isinstance(audio, (list, tuple)) and all(isinstance(item, (torch.Tensor, np.ndarray)) for item in audio):
            waveforms = list(audio)
        elif getattr(audio, "audio", None) is not None:  # generate's whole output (return_dict_in_generate=True)
            raise VallETypeError(f"save_audio takes waveforms, got {type(audio).__name__}, which holds them: pass its "
                                 ".audio")
        else:
            raise VallETypeError(f"save_audio takes a waveform (tensor or array) or a list of them, got {audio!r:.60}")
        paths = [saving_path] if isinstance(saving_path, (str, os.PathLike)) else list(saving_path)
        if len(waveforms) != len(paths):
            raise VallEValueError(f"save_audio got {len(waveforms)} waveforms for {len(paths)} paths: give one path "
                                  "per waveform")
        if len({os.path.realpath(path) for path in paths}) != len(paths):
            raise VallEValueError("save_audio got the same path for two waveforms: the second would replace the first; "
                                  "give one path per waveform")
        rate = sampling_rate if sampling_rate is not None else self.feature_extractor.sampling_rate
        files = [encoded_audio(path, waveform, rate) for waveform, path in zip(waveforms, paths, strict=True)]
        return [write_encoded(out, encoded) for out, encoded in files]
