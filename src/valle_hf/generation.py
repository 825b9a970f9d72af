"""Generation: the AR stage through transformers' own loop (KV cache, processors, stopping), then the NAR, then audio.

`VallEGenerationMixin.generate` turns phoneme ids and a voice prompt into codes and audio:

1. each row becomes ``text SEP [level 0] SEP prompt SEP response`` in the unified id space, left-padded;
2. `GenerationMixin.generate` samples level 0 until the stop token (cached, batched, any decoding strategy);
3. one parallel forward per NAR level fills levels 1..7 (argmax, or sampling at `nar_temperature`);
4. the attached EnCodec decodes the codes.

STT (`task="stt"`) runs step 2 over ``audio SEP [level 0] SEP <bos> ...`` with the text head and returns phoneme ids.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from transformers import DynamicCache, GenerationConfig, GenerationMixin
from transformers.generation.utils import GenerateDecoderOnlyOutput

from .cache import CACHE_KWARG, PreallocatedDynamicCache
from .codec import decode_batch, encode
from .layer_skip import LayerSkip
from .layout import pad, segment_position_ids, stt_sequence, tts_sequence
from .logits_process import build_sampler_processors
from .processing import load_references

# Sampler settings of the original CLI that transformers has no field for (or names differently), with the values
# that switch them off. They live on the generation config and may be passed to `generate` as keyword arguments.
VALLE_GENERATION_DEFAULTS = {
    "min_temperature": -1.0,
    "repetition_penalty_decay": 0.0,
    "stop_length_penalty": 0.0,
    "dry_multiplier": 0.0,
    "dry_base": 1.75,
    "dry_allowed_length": 2,
    "mirostat_tau": 0.0,
    "mirostat_eta": 0.1,
    "sampler_order": "original",
    "nar_temperature": 0.0,
    "max_levels": None,
    "prefix_silence": 0.0,
    "input_prompt_length": None,
    "input_prompt_prefix": False,
    "refine_on_stop": False,
    "layer_skip": False,
    "layer_skip_exit_layer": -1,
    "layer_skip_entropy_threshold": 0.1,
    "layer_skip_varentropy_threshold": 0.1,
    "output_audio": True,
    "audio_backend": None,
}
# Samplers we apply ourselves (in the original's order); transformers' own versions are switched off.
_TRANSFORMERS_SAMPLER_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")


# The original CLI's tuned defaults (`vall_e/__main__.py`), the settings the released model is meant to be used with.
TUNED_DEFAULTS = {
    "temperature": 0.5,
    "repetition_penalty": 1.5,
    "nar_temperature": 0.0,
    "input_prompt_length": 3.0,
}
MAX_SECONDS = 12  # the original CLI's `--max-ar-steps` default: 12 s of audio


def default_generation_config(config) -> GenerationConfig:
    """The shipped `generation_config.json`: the original CLI's tuned defaults, so `generate`, the pipeline and the
    CLI speak alike (AR temperature 0.5, greedy NAR, repetition penalty 1.5, a 3 s prompt, 12 s at most)."""
    settings = {**VALLE_GENERATION_DEFAULTS, **TUNED_DEFAULTS}
    return GenerationConfig(
        max_new_tokens=MAX_SECONDS * config.frame_rate,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        eos_token_id=config.stop_token_id,
        pad_token_id=config.pad_token_id,
        **settings,
    )


@dataclass
class VallEGenerateOutput(GenerateDecoderOnlyOutput):
    """`GenerateDecoderOnlyOutput` plus what a TTS/STT call produces.

    codes: `[B, T_max, levels]` EnCodec codes, right-padded; `lengths`: frames per row.
    audio: one 1-D waveform per row at `config.sampling_rate` (when a codec decoded them).
    text_ids: one LongTensor of phoneme ids per row (STT; without BOS/EOS).
    stopped: whether each row emitted its stop token before `max_new_tokens`.
    exit_layers: `[B, steps]` layers each row ran at every AR step (with `layer_skip`); `nar_exit_layers`:
    `[B, levels]` the same for the NAR passes.
    sequences_scores, beam_indices: as in `GenerateBeamDecoderOnlyOutput` (beam search only).
    With `num_return_sequences=n` every per-row field has `n` consecutive rows per input row.
    """

    sequences_scores: torch.FloatTensor | None = None
    beam_indices: torch.LongTensor | None = None
    codes: torch.LongTensor | None = None
    lengths: torch.LongTensor | None = None
    audio: list[torch.Tensor] | None = None
    text_ids: list[torch.LongTensor] | None = None
    stopped: torch.BoolTensor | None = None
    exit_layers: torch.LongTensor | None = None
    nar_exit_layers: torch.LongTensor | None = None


def _rows(tensor: torch.Tensor, mask: torch.Tensor | None, name: str, dims: int) -> list[torch.Tensor]:
    """Split a padded batch into its rows (any padding side), dropping the masked entries."""
    if tensor.dim() == dims - 1:
        tensor = tensor.unsqueeze(0)
        mask = None if mask is None else mask.reshape(1, -1)
    if tensor.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions ([batch, ...]), got shape {tuple(tensor.shape)}")
    if mask is None:
        return list(tensor)
    if mask.shape != tensor.shape[:2]:
        raise ValueError(f"the mask of {name} must have shape {tuple(tensor.shape[:2])}, got {tuple(mask.shape)}")
    return [row[row_mask.bool()] for row, row_mask in zip(tensor, mask, strict=True)]


def _repeat_rows(rows: list, copies: int) -> list:
    """Each row `copies` times in a row (the order of `num_return_sequences` outputs)."""
    return [row for row in rows for _ in range(copies)]


class VallEGenerationMixin(GenerationMixin):
    """`generate()` for VALL-E; everything step-wise is left to `GenerationMixin` (cache, processors, stopping)."""

    # ------------------------------------------------------------------ hooks of GenerationMixin
    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        """No position ids up front (they restart per segment); records where the response's positions start.

        Every token a cached step feeds extends the response, the last segment, so its position id is its column
        minus a per-row offset that the input fixes once: `response_position_offset`, read off the position the
        first generated token gets (a response id appended to the input).
        """
        if torch.is_tensor(inputs_tensor) and inputs_tensor.dim() == 2 and inputs_tensor.shape[1] > 0:
            probe = torch.cat([inputs_tensor, inputs_tensor.new_zeros(inputs_tensor.shape[0], 1)], dim=1)
            first = segment_position_ids(probe, self.config)[:, -1:]
            model_kwargs["response_position_offset"] = inputs_tensor.shape[1] - first
        return None

    def prepare_inputs_for_generation(self, input_ids, response_position_offset=None, **kwargs):
        """Model inputs of one step; a cached step's new response tokens cost O(1), whatever the sequence length."""
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        new_ids, total = inputs["input_ids"], input_ids.shape[1]
        cached_step = new_ids.shape[1] < total and not kwargs.get("is_first_iteration")
        if cached_step and response_position_offset is not None:
            columns = torch.arange(total - new_ids.shape[1], total, device=input_ids.device)
            inputs["position_ids"] = columns.unsqueeze(0) - response_position_offset
            inputs["inputs_embeds"] = self.model.embed_response_tokens(new_ids, kwargs.get("task", "tts"))
            inputs["input_ids"] = None
        else:  # the first step (the whole input, or whatever a caller's cache does not hold yet) or no cache
            inputs["position_ids"] = segment_position_ids(input_ids, self.config)[:, -new_ids.shape[1]:]
        if new_ids.shape[1] < total:  # the prefix frames are already in the cache
            inputs.pop("prompt_codes", None)
            inputs.pop("audio_codes", None)
        return inputs

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, generation_mode, batch_size,
                                      max_cache_length):
        """transformers' cache choice, except that its default `DynamicCache` becomes a `PreallocatedDynamicCache`
        with room for the whole generation (`max_cache_length`: the final sequence length)."""
        super()._prepare_cache_for_generation(generation_config, model_kwargs, generation_mode, batch_size,
                                              max_cache_length)
        cache = model_kwargs.get(CACHE_KWARG)
        chosen = generation_config.cache_implementation is not None or getattr(cache, "_is_user_defined", False)
        if type(cache) is DynamicCache and not chosen:
            model_kwargs[CACHE_KWARG] = PreallocatedDynamicCache(self.config.backbone_config(), max_cache_length)

    def _get_logits_processor(self, generation_config, *args, **kwargs):
        """transformers' processors without its samplers, then ours in the configured (by default original) order."""
        neutral = copy.deepcopy(generation_config)
        for field in _TRANSFORMERS_SAMPLER_FIELDS:
            setattr(neutral, field, None)
        processors = super()._get_logits_processor(neutral, *args, **kwargs)

        def get(name):
            return getattr(generation_config, name, VALLE_GENERATION_DEFAULTS[name])

        sampling = bool(generation_config.do_sample)
        eos = generation_config.eos_token_id
        processors.extend(
            build_sampler_processors(
                temperature=(generation_config.temperature or 1.0) if sampling else 0.0,
                min_temperature=get("min_temperature"),
                top_k=(generation_config.top_k or 0) if sampling else 0,
                top_p=generation_config.top_p if sampling and generation_config.top_p is not None else 1.0,
                min_p=(generation_config.min_p or 0.0) if sampling else 0.0,
                repetition_penalty=generation_config.repetition_penalty or 1.0,
                repetition_penalty_decay=get("repetition_penalty_decay"),
                stop_length_penalty=get("stop_length_penalty"),
                stop_token_id=eos[0] if isinstance(eos, (list, tuple)) else eos,
                dry_multiplier=get("dry_multiplier"),
                dry_base=get("dry_base"),
                dry_allowed_length=get("dry_allowed_length"),
                mirostat_tau=get("mirostat_tau") if sampling else 0.0,
                mirostat_eta=get("mirostat_eta"),
                order=get("sampler_order"),
            )
        )
        return processors

    # ------------------------------------------------------------------ public entry point
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        prompt_codes: torch.LongTensor | None = None,
        prompt_attention_mask: torch.LongTensor | None = None,
        prompt_audio=None,
        audio_codes: torch.LongTensor | None = None,
        audio_attention_mask: torch.LongTensor | None = None,
        audio=None,
        task: str = "tts",
        generation_config: GenerationConfig | None = None,
        return_dict_in_generate: bool | None = None,
        **kwargs,
    ):
        r"""Text-to-speech (default) or speech-to-text.

        TTS: `input_ids` `[B, L]` phoneme ids with BOS/EOS (any padding side, given `attention_mask`), and a voice
        prompt as `prompt_codes` `[B, Tp, 8]` (+ `prompt_attention_mask`) or `prompt_audio` (waveforms at 24 kHz or
        file paths, one per row or one for all). STT: `audio_codes` `[B, T, 8]` (+ `audio_attention_mask`) or
        `audio`, with `task="stt"`.

        Besides every `GenerationConfig` field (`do_sample`, `temperature` (0 = greedy), `top_k`, `top_p`, `min_p`,
        `repetition_penalty`, `num_beams`, `max_new_tokens`, ...), it takes the original's settings listed in
        `VALLE_GENERATION_DEFAULTS`: `min_temperature`, `repetition_penalty_decay`, `stop_length_penalty`, `dry_*`,
        `mirostat_*`, `sampler_order` ("original": filters before temperature, or "transformers"),
        `nar_temperature`, `max_levels`, `prefix_silence` (seconds), `input_prompt_length` (seconds of prompt kept,
        looped when shorter), `input_prompt_prefix`, `refine_on_stop`, `layer_skip` (with
        `layer_skip_exit_layer`, `layer_skip_entropy_threshold`, `layer_skip_varentropy_threshold`; see
        `layer_skip.py`),
        `output_audio`.

        Returns a `VallEGenerateOutput` when `return_dict_in_generate`; otherwise the list of waveforms (TTS, or the
        codes when `output_audio=False`) or the list of phoneme-id tensors (STT).
        """
        generation_config, kwargs = self._merge_generation_config(generation_config, kwargs)
        if task == "stt":
            result = self._generate_stt(audio_codes, audio_attention_mask, audio, generation_config, kwargs)
            return result if return_dict_in_generate else result.text_ids
        if task != "tts":
            raise ValueError(f"unknown task {task!r}; expected 'tts' or 'stt'")
        result = self._generate_tts(
            input_ids, attention_mask, prompt_codes, prompt_attention_mask, prompt_audio, generation_config, kwargs
        )
        if return_dict_in_generate:
            return result
        if result.audio is not None:
            return result.audio
        return [codes[:length] for codes, length in zip(result.codes, result.lengths, strict=True)]

    # ------------------------------------------------------------------ inputs
    def _merge_generation_config(self, generation_config, kwargs) -> tuple[GenerationConfig, dict]:
        """A per-call copy of the generation config with the keyword arguments applied; returns the model kwargs."""
        generation_config = copy.deepcopy(generation_config or self.generation_config)
        for name, default in VALLE_GENERATION_DEFAULTS.items():
            setattr(generation_config, name, kwargs.pop(name, getattr(generation_config, name, default)))
        generation_config.return_dict_in_generate = True  # before update(), which warns about output_* without it
        model_kwargs = generation_config.update(**kwargs)
        if generation_config.temperature is not None and generation_config.temperature <= 0:
            generation_config.temperature, generation_config.do_sample = 1.0, False  # the original's greedy
        if not generation_config.do_sample:
            # Filters cannot change an argmax (our processors get top_k 0 when greedy); 50 is transformers' own
            # default, the one value its validation does not flag as "set but unused" in greedy mode.
            generation_config.top_k = 50
        return generation_config, model_kwargs

    def _text_rows(self, input_ids, attention_mask) -> list[torch.Tensor]:
        if input_ids is None:
            raise ValueError("input_ids (phoneme ids) are required for TTS")
        rows = _rows(input_ids.to(self.device), None if attention_mask is None else attention_mask.to(self.device),
                     "input_ids", 2)
        for row in rows:
            if len(row) == 0:
                raise ValueError("empty text: every row of input_ids needs at least one phoneme id")
            if row.min() < 0 or row.max() >= self.config.text_vocab_size:
                raise ValueError(f"input_ids must be phoneme ids in 0..{self.config.text_vocab_size - 1}")
        return rows

    def _code_rows(self, codes, mask, references, name: str, batch: int | None) -> list[torch.Tensor] | None:
        """Per-row `[T, 8]` codes, from padded codes or from reference audio encoded with the attached codec.

        `references`: one source for every row, or a list with one per row; a source is a 24 kHz waveform, a path,
        a ';'-joined string of paths or a list of those (see `load_references`).
        """
        if codes is None and references is None:
            return None
        if codes is None:
            rows = list(references) if isinstance(references, (list, tuple)) else [references]
            rows = self._encode_references(rows)
        else:
            rows = _rows(codes.to(self.device), None if mask is None else mask.to(self.device), name, 3)
        if batch is not None and len(rows) == 1 and batch > 1:
            rows = rows * batch
        if batch is not None and len(rows) != batch:
            raise ValueError(f"{name}: got {len(rows)} rows for a batch of {batch}")
        for row in rows:
            if row.shape[-1] != self.config.num_rvq_levels:
                raise ValueError(f"{name} must have {self.config.num_rvq_levels} RVQ levels, got {row.shape[-1]}")
            if row.numel() and (row.min() < 0 or row.max() >= self.config.audio_vocab_size):
                raise ValueError(f"{name} must be EnCodec codes in 0..{self.config.audio_vocab_size - 1}")
        return [row.long() for row in rows]

    def _encode_references(self, rows: list) -> list[torch.LongTensor]:
        """Each row's references encoded whole and on their own, their codes joined, as the original does
        (`vall_e/inference.py:encode_audio`). Rows with the same audio (a prompt broadcast to a batch) are encoded
        once."""
        def same(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
            return len(first) == len(second) and all(
                a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, second, strict=True)
            )

        encoded: list[tuple[list[torch.Tensor], torch.LongTensor]] = []
        codes_per_row = []
        for row in rows:
            waveforms = load_references(row)
            codes = next((codes for seen, codes in encoded if same(seen, waveforms)), None)
            if codes is None:
                codes = torch.cat([encode(self.codec_model, waveform.to(self.device), self.config.codec_bandwidth)
                                   for waveform in waveforms])
                encoded.append((waveforms, codes))
            codes_per_row.append(codes)
        return codes_per_row

    # ------------------------------------------------------------------ TTS
    def _generate_tts(self, input_ids, attention_mask, prompt_codes, prompt_mask, prompt_audio, config, kwargs):
        max_levels = config.max_levels if config.max_levels is not None else self.config.num_rvq_levels - 1
        if not 0 <= max_levels < self.config.num_rvq_levels:
            raise ValueError(f"max_levels must be 0..{self.config.num_rvq_levels - 1}, got {max_levels}")
        texts = self._text_rows(input_ids, attention_mask)
        prompts = self._code_rows(prompt_codes, prompt_mask, prompt_audio, "prompt_codes", len(texts))
        if prompts is not None and config.input_prompt_length:
            prompts = [self._trim_prompt(prompt, config.input_prompt_length) for prompt in prompts]
        prefixes = self._response_prefixes(texts, prompts, config)
        sequences = [
            tts_sequence(self.config, text, 0, None if prompt is None else (0 if config.input_prompt_prefix
                                                                            else len(prompt)), prefix)
            for text, prompt, prefix in zip(texts, prompts or [None] * len(texts), prefixes, strict=True)
        ]
        ar_ids, ar_mask = pad(sequences, self.config.pad_token_id)
        prompt_batch = None if prompts is None else pad(prompts, 0, side="right")[0]
        ar_skip, nar_skip = self._layer_skip(config), self._layer_skip(config)
        output = GenerationMixin.generate(
            self, input_ids=ar_ids, attention_mask=ar_mask, prompt_codes=prompt_batch, task="tts", level=0,
            generation_config=config, **({"early_exit": ar_skip} if ar_skip else {}), **kwargs,
        )
        copies = output.sequences.shape[0] // len(texts)  # num_return_sequences: consecutive rows per input row
        if copies > 1:
            texts, prefixes = _repeat_rows(texts, copies), _repeat_rows(prefixes, copies)
            prompts = None if prompts is None else _repeat_rows(prompts, copies)
            ar_mask = ar_mask.repeat_interleave(copies, dim=0)
            prompt_batch = None if prompt_batch is None else prompt_batch.repeat_interleave(copies, dim=0)
        generated, stopped = self._cut_at_stop(output.sequences[:, ar_ids.shape[1]:], self.config.stop_token_id)
        if config.refine_on_stop:
            generated = self._refine(output.sequences, ar_mask, prompt_batch, generated)
        self._warn_unstopped(stopped, config)
        level0 = [torch.cat([prefix, tokens]) for prefix, tokens in zip(prefixes, generated, strict=True)]
        codes = self._generate_nar(texts, prompts, level0, max_levels, config.nar_temperature, nar_skip)
        # The response prefix (silence or the prompt itself) conditioned the model but is not part of the output.
        rows = [row[len(prefix):] for row, prefix in zip(codes, prefixes, strict=True)]
        lengths = torch.tensor([len(row) for row in rows], device=self.device)
        audio = self._decode(rows, config.audio_backend) if config.output_audio else None
        padded = pad(rows, 0, side="right")[0] if rows else None
        return VallEGenerateOutput(
            sequences=output.sequences, scores=output.scores, logits=output.logits, codes=padded, lengths=lengths,
            audio=audio, stopped=stopped, exit_layers=self._exit_trace(ar_skip),
            nar_exit_layers=self._exit_trace(nar_skip),
            sequences_scores=getattr(output, "sequences_scores", None),
            beam_indices=getattr(output, "beam_indices", None),
        )

    @staticmethod
    def _layer_skip(config) -> LayerSkip | None:
        if not config.layer_skip:
            return None
        return LayerSkip(config.layer_skip_exit_layer, config.layer_skip_entropy_threshold,
                         config.layer_skip_varentropy_threshold)

    @staticmethod
    def _exit_trace(skip: LayerSkip | None) -> torch.LongTensor | None:
        return torch.stack(skip.exit_layers, dim=1) if skip and skip.exit_layers else None

    def _trim_prompt(self, prompt: torch.LongTensor, seconds: float) -> torch.LongTensor:
        """Exactly `seconds` of prompt from its start, looping a shorter one (the original's repeat_extend_audio)."""
        frames = int(seconds * self.config.frame_rate)
        if seconds < 0 or frames == 0 or len(prompt) == 0:
            raise ValueError(f"input_prompt_length must be at least one frame (1/{self.config.frame_rate} s), "
                             f"got {seconds}")
        return prompt.repeat(-(-frames // len(prompt)), 1)[:frames]

    def _response_prefixes(self, texts, prompts, config) -> list[torch.LongTensor]:
        """Level-0 frames the AR response starts from: the prompt itself, or `prefix_silence` seconds of silence."""
        if config.input_prompt_prefix:
            if prompts is None:
                raise ValueError("input_prompt_prefix needs a voice prompt")
            return [prompt[:, 0] for prompt in prompts]
        if config.prefix_silence < 0:
            raise ValueError(f"prefix_silence must be >= 0 seconds, got {config.prefix_silence}")
        frames = int(config.prefix_silence * self.config.frame_rate)
        return [torch.full((frames,), self.config.silence_codes[0], device=self.device) for _ in texts]

    @staticmethod
    def _cut_at_stop(tokens: torch.LongTensor, stop: int) -> tuple[list[torch.LongTensor], torch.BoolTensor]:
        """Each row up to (excluding) its first stop token; rows without one are kept whole."""
        is_stop = tokens == stop
        stopped = is_stop.any(dim=1)
        ends = torch.where(stopped, is_stop.long().argmax(dim=1), tokens.shape[1])
        return [row[:end] for row, end in zip(tokens, ends.tolist(), strict=True)], stopped

    def _warn_unstopped(self, stopped: torch.BoolTensor, config) -> None:
        if not bool(stopped.all()):
            rows = (~stopped).nonzero().flatten().tolist()
            warnings.warn(
                f"row(s) {rows} reached max_new_tokens={config.max_new_tokens} without a stop token; "
                "the output may be cut off (raise max_new_tokens)",
                stacklevel=5,  # the caller of generate()
            )

    def _refine(self, sequences, prefix_mask, prompt_batch, generated) -> list[torch.LongTensor]:
        """Refine-on-stop: one teacher-forced pass over the final sequences; argmax at every response position.

        Stop tokens the argmax predicts inside the response are removed (the original keeps them).
        """
        prefix_length = prefix_mask.shape[1]
        mask = torch.cat([prefix_mask, torch.ones_like(sequences[:, prefix_length:])], dim=1)  # left padding
        logits = self(input_ids=sequences, attention_mask=mask, prompt_codes=prompt_batch, task="tts", level=0,
                      use_cache=False, logits_to_keep=sequences.shape[1] - prefix_length + 1).logits
        refined = logits[:, :-1].argmax(dim=-1)
        rows = [row[: len(tokens)] for row, tokens in zip(refined, generated, strict=True)]
        return [row[row != self.config.stop_token_id] for row in rows]

    # ------------------------------------------------------------------ NAR
    def _generate_nar(self, texts, prompts, level0, max_levels: int, temperature: float,
                      layer_skip: LayerSkip | None = None) -> list[torch.LongTensor]:
        """Levels 1..max_levels, one batched forward per level, each row conditioned on its levels so far."""
        codes = [row.unsqueeze(-1) for row in level0]
        frames = max(len(row) for row in codes)
        prompt_batch = None if prompts is None else pad(prompts, 0, side="right")[0]  # the same at every level
        for level in range(1, max_levels + 1):
            if frames == 0:
                codes = [torch.cat([row, row[:, :1]], dim=1) for row in codes]
                continue
            sequences = [
                tts_sequence(self.config, text, level, None if prompt is None else len(prompt),
                             response_frames=len(row))
                for text, prompt, row in zip(texts, prompts or [None] * len(texts), codes, strict=True)
            ]
            ids, mask = pad(sequences, self.config.pad_token_id)
            audio_batch, valid = pad(codes, 0, side="right")
            logits = self(
                input_ids=ids, attention_mask=mask, prompt_codes=prompt_batch, audio_codes=audio_batch,
                level=level, task="tts", logits_to_keep=frames, early_exit=layer_skip, use_cache=False,
            ).logits
            rows_logits = logits[(ids == self.config.audio_frame_token_id)[:, -frames:]]
            new_level = torch.zeros_like(valid)
            new_level[valid.bool()] = self._sample_frames(rows_logits, temperature)
            codes = [torch.cat([row, new_level[index, : len(row), None]], dim=1) for index, row in enumerate(codes)]
        return codes

    @staticmethod
    def _sample_frames(logits: torch.Tensor, temperature: float) -> torch.LongTensor:
        if temperature <= 0:
            return logits.argmax(dim=-1)
        return torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1).squeeze(-1)

    def _decode(self, rows: list[torch.LongTensor], backend: str | None) -> list[torch.Tensor]:
        """Waveforms of code rows `[T_i, levels]` with `backend` ("vocos", "encodec"; None: the model's own)."""
        backend = backend or self.config.audio_backend
        if backend == "vocos" and self.vocoder is None:
            raise ValueError("audio_backend='vocos' needs a model converted with the Vocos decoder; this one has "
                             "none: use audio_backend='encodec'")
        if backend not in ("vocos", "encodec"):
            raise ValueError(f"audio_backend must be 'vocos' or 'encodec', got {backend!r}")
        if not rows:
            return []
        codes, mask = pad(rows, 0, side="right")
        lengths = mask.sum(dim=1)
        if backend == "vocos":
            return self.vocoder.decode(codes, lengths=lengths)
        return decode_batch(self.codec_model, codes, lengths)

    # ------------------------------------------------------------------ STT
    def _generate_stt(self, audio_codes, audio_mask, audio, config, kwargs) -> VallEGenerateOutput:
        self.head_index(0, "stt")  # refuses a checkpoint without the text head, before any work
        rows = self._code_rows(audio_codes, audio_mask, audio, "audio_codes", None)
        if rows is None:
            raise ValueError("speech-to-text needs audio_codes or audio")
        bos = torch.tensor([self.config.text_bos_token_id], device=self.device)
        ids, mask = pad([stt_sequence(self.config, len(row), bos) for row in rows], self.config.pad_token_id)
        config.eos_token_id = self.config.text_eos_token_id
        skip = self._layer_skip(config)
        output = GenerationMixin.generate(
            self, input_ids=ids, attention_mask=mask, audio_codes=pad(rows, 0, side="right")[0], task="stt",
            level=0, generation_config=config, **({"early_exit": skip} if skip else {}), **kwargs,
        )
        text_ids, stopped = self._cut_at_stop(output.sequences[:, ids.shape[1]:], self.config.text_eos_token_id)
        self._warn_unstopped(stopped, config)
        return VallEGenerateOutput(
            sequences=output.sequences, scores=output.scores, logits=output.logits, text_ids=text_ids, stopped=stopped,
            exit_layers=self._exit_trace(skip),
        )
