"""The web demo's page (Gradio): a text-to-speech tab that streams its audio, and a speech-to-text tab.

Every sampler flag of the command line (`cli.FLAG_SETTINGS`) is a control, declared from the CLI's own parser (type,
choices, help) with the loaded model's generation config as its default and `SETTING_RULES` as its stated range. What
a user submits goes through the CLI's own checks (`cli.prepare_inputs`, `cli.generation_kwargs`), so the page refuses
what the CLI refuses, in the same words, as a message on the page instead of a traceback.
"""

from __future__ import annotations

import argparse
import contextvars
import io
import logging
import os
import re
import reprlib
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import gradio as gr
import gradio.utils as gradio_utils
import numpy as np
import pydantic
import soundfile
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .audio import joined_sentences, save_audio
from .cli import (
    FLAG_NAMES,
    FLAG_RULES,
    FLAG_SETTINGS,
    check_streaming,
    flag_actions,
    generation_kwargs,
    parse_flag,
    prepare_inputs,
    run_seed,
    whole_number,
)
from .configuration import SETTING_RULES, TTS_ONLY_SETTINGS, setting_limits
from .errors import UsageError, VallEError, get_logger, one_line, out_of_memory
from .generation import setting_names
from .phonemes import MODEL_LANGUAGES, check_text
from .seeding import sentence_seeds
from .streaming import (
    CHUNK_SECONDS_RULE,
    DEFAULT_CHUNK_SECONDS,
    AudioIteratorStreamer,
    RowOrder,
    not_streamable,
)

__all__ = ["build_page", "sampler_controls"]


@contextmanager
def errors_on_page():
    """Show the package's errors (a user's mistake) as a one-line message on the page, never as a traceback; any
    other exception is a bug and keeps its traceback in the server log."""
    try:
        yield
    except VallEError as error:
        raise gr.Error(_for_page(one_line(error)), print_exception=False) from None
    except (MemoryError, RuntimeError) as error:  # torch.OutOfMemoryError (CUDA) is a RuntimeError too
        if not out_of_memory(error):
            raise
        raise gr.Error(f"out of memory for this run ({one_line(error, 200)}): ask for less (a shorter text, a smaller "
                       "beam width, fewer AR steps)", print_exception=False) from None


# What the page's HTML would read as a tag ("<unk>") or an entity ("&amp;") rather than as text.
_MARKUP = re.compile(r"<(?=[A-Za-z/!?])|&(?=#?\w+;)")


def _for_page(message: str) -> str:
    """`message` as the page shows it: its uploads named as uploaded (`_as_uploaded`), and its text as text. The page
    renders a message as HTML, so "read as <unk> (the model was not ...)" ended at "read as ". Only what would start
    a tag or an entity is escaped, since the API hands the same message to its caller: "or < 0 for off" stays as
    it is."""
    return _MARKUP.sub(lambda match: "&lt;" if match.group() == "<" else "&amp;", _as_uploaded(message))


def _as_uploaded(message: str) -> str:
    """`message` with each uploaded file named as the user uploaded it: Gradio keeps an upload as
    <upload folder>/<64 hex digits>/<name>, a path that means nothing to the user (and tells the server's layout);
    its separators are the system's ('\\' on Windows)."""
    folder = re.escape(str(Path(gradio_utils.get_upload_folder())))
    return re.sub(rf"{folder}[\\/][0-9a-f]{{64}}[\\/]", "", message)


class _Collected(logging.Handler):
    """Keeps the message of each warning logged while it is attached, in one line."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(one_line(record.getMessage()))


@contextmanager
def warnings_on_page():
    """Show the package's warnings during a run (speech cut off by the AR step limit, a setting that does not apply
    to this model, symbols read as <unk>) as notices on the page, each once: in the server's log alone, the user who
    caused them would never see them. The page's runs take turns on the model, so what is logged meanwhile is theirs.
    Each upload is named as uploaded, as in the page's errors (a silent voice prompt's warning names its file)."""
    package = get_logger("valle_hf")
    collected = _Collected()
    package.addHandler(collected)
    try:
        yield
    finally:
        package.removeHandler(collected)
        for message in dict.fromkeys(collected.messages):
            gr.Warning(_for_page(message))


# What None means in a generation config, for the settings where a control can show that value instead of a blank
# (which would also make the setting a required argument of the page's API).
NONE_MEANS = {
    "audio_backend": lambda model_config: model_config.audio_backend,
    "max_levels": lambda model_config: model_config.num_rvq_levels - 1,  # all NAR levels
    "min_p": lambda model_config: 0.0,  # off
    "num_beams": lambda model_config: 1,  # no beam search
}


def sampler_controls(generation_config, model_config, task: str = "tts") -> dict[str, gr.components.Component]:
    """One control per CLI sampler flag that applies to `task` ("tts" or "stt"), keyed by the flag's name.

    The controls are not placed yet (`render()` them where they belong). Each default is the model's generation
    config's value (so a control left alone changes nothing), and each number or text control states its flag's
    allowed range (`FLAG_RULES`, else its setting's `SETTING_RULES`) and what the model narrows it to
    (`setting_limits`: "[0, 3600]" seconds of prompt were shown where the released model takes 300); a checkbox or a
    choice offers only what is allowed.
    """
    controls, limits = {}, setting_limits(model_config)
    for flag, action in flag_actions().items():
        setting = FLAG_SETTINGS[flag]
        if task == "stt" and setting in TTS_ONLY_SETTINGS:
            continue
        value = getattr(generation_config, setting)
        if setting == "temperature" and generation_config.do_sample is False:
            value = 0.0  # a config that decodes greedily ignores its temperature: the control says greedy
        if value is None and setting in NONE_MEANS:
            value = NONE_MEANS[setting](model_config)
        # The flag's own range where it differs from its setting's (--beam-width 0 is off); max_new_tokens has none
        rule = FLAG_RULES.get(flag) or (SETTING_RULES[setting][0] if setting in SETTING_RULES else None)
        if rule and setting in limits:
            rule = f"{rule}; {limits[setting]}"
        controls[flag] = _control(action, value, rule, elem_id=f"{task}-{flag.replace('_', '-')}")
    return controls


def _control(action: argparse.Action, value, rule: str | None, elem_id: str) -> gr.components.Component:
    """The control for one flag: a checkbox, a choice, a number or (token ids) a comma-separated text."""
    label = f"{action.dest.replace('_', ' ')} ({action.option_strings[0]})"
    meaning = action.help.split("[")[0].strip()  # the help's bracketed default is the released model's, not this one
    if action.nargs == 0 or action.choices:  # the control offers only what is allowed ("True or False" was shown)
        rule = None
    info = "; ".join(part for part in (meaning, rule and f"allowed: {rule}") if part)
    common = dict(label=label, info=info, elem_id=elem_id, render=False)
    if action.nargs == 0:
        return gr.Checkbox(value=bool(value), **common)
    if action.choices:
        return gr.Dropdown(choices=list(action.choices), value=value, **common)
    if action.type in (whole_number, float):
        # No precision, also for an integer: Gradio would round 3.7 to 4 without a word, before the flag's own check
        # could refuse it as the CLI does
        return gr.Number(value=value, **common)
    return gr.Textbox(value=",".join(str(token) for token in value or ()), **common)


def _arguments(task: str, flags: dict, **inputs) -> argparse.Namespace:
    """What the CLI's parser would have made of these control values (flags without a control are not given)."""
    values = dict.fromkeys(FLAG_SETTINGS)
    for flag, value in flags.items():
        if flag == "dry_sequence_breakers" and isinstance(value, str) and not value.strip():
            value = []  # an emptied list of token ids is none (an emptied number is the default)
        else:
            # as the CLI reads it: text, a number field's 5.0 for an integer; and what the page's API may send that a
            # control would not (a list or true for a number, an unknown name) is refused naming the flag
            value = parse_flag(flag, value)
        values[flag] = value
    return argparse.Namespace(task=task, out_path_option=None, **inputs, **values)


# The largest seed the page's number fields hold exactly (a JavaScript number's whole-number range).
MAX_PAGE_SEED = 2**53 - 1


def _number(label: str, value) -> float | int | None:
    """A number field's value: a number, None (emptied, blank text too), or text read as a number, as the sampler
    controls' text is read (the page's API takes any JSON). Refuses (`UsageError`) anything else (a list, true, text
    that is no number), which a range check would name as if it were a number."""
    if isinstance(value, str):
        try:
            return float(value) if value.strip() else None  # emptied: the default, as a sampler control's
        except ValueError:
            pass
    if not isinstance(value, (int, float, type(None))) or isinstance(value, bool):
        raise UsageError(f"{label} must be a number, got {value!r}")
    return value


def _check_switch(label: str, value) -> None:
    """Refuse (`UsageError`) a checkbox's value that is not true or false: the page's API takes any JSON, and the
    string "false" would be read as ticked."""
    if not isinstance(value, bool):
        raise UsageError(f"{label} must be true or false, got {value!r}")


def _seed(seed: float | None) -> int:
    """The seed of a run: `seed`, or a random one when it is empty or -1 (a number field in the browser cannot stay
    empty; another negative number is a typo, refused). Sentence i draws from seed + i, as with the CLI's --seed, so
    a run here repeats on the command line with `--stream --stream-chunk` of the page's chunk (a bfloat16 NAR, as
    "auto" picks on some CPUs, rounds by the chunk's shape, so only a float32 NAR gives the same codes unstreamed).
    Raises `UsageError` for a seed that is not -1 or a whole number the page can show back."""
    seed = _number("Seed", seed)
    if seed is None or seed == -1:
        return run_seed(None)
    if not float(seed).is_integer() or not 0 <= seed <= MAX_PAGE_SEED:
        raise UsageError(f"Seed must be a whole number from 0 to {MAX_PAGE_SEED} (or -1 for a random one), got {seed}")
    return int(seed)


class StepProgress(StoppingCriteria):
    """Reports each AR step to the page's progress bar, and ends generation early when `stop` is set (the page was
    left or the run cancelled), so an abandoned run does not hold the model."""

    def __init__(self, progress: gr.Progress, total: int, stop: threading.Event):
        self.progress, self.total, self.stop, self.done = progress, total, stop, 0

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        self.done += 1
        self.progress((self.done, self.total), desc="generating", unit="steps")
        return torch.full((input_ids.shape[0],), self.stop.is_set(), dtype=torch.bool, device=input_ids.device)


class RunCancelled(Exception):
    """Ends a run once it was cancelled (`Generation.close`): raised by its next forward pass, or by `result()` when
    the cancel ended the AR steps instead."""


class Generation(threading.Thread):
    """`model.generate(**kwargs)` in a thread of its own, so that the page can play a streamer's audio meanwhile.

    The thread runs in a copy of the caller's context (where Gradio keeps the request's progress bar). `result()`
    waits for the end and returns what `generate` returned, or raises what it raised; `close()` ends the run early
    through `stop`, which the run's stopping criteria read at every AR step, and which every decoder layer and the
    audio decoders check before they run, in this run's thread (raising `RunCancelled`): no stopping criterion
    reaches the NAR levels and the audio decoding after the AR, which took most of a long text's time (a Stop waited a
    minute for them).
    """

    def __init__(self, model, streamer: AudioIteratorStreamer | None, stop: threading.Event, **kwargs):
        super().__init__(daemon=True)
        self.model, self.streamer, self.stop, self.kwargs = model, streamer, stop, kwargs
        self.context = contextvars.copy_context()
        self.output, self.error = None, None

    def run(self) -> None:
        # first of the modules' hooks: a cancelled run runs none of them (a profiler's, say)
        hooks = [module.register_forward_pre_hook(self._check_stop, prepend=True) for module in self._checkpoints()]
        try:
            output = self.context.run(self.model.generate, audio_streamer=self.streamer, **self.kwargs)
        except BaseException as error:  # handed to the caller by result()
            self.error = error
        else:
            # A stop that came after a step's layers ran ends the AR through the stopping criterion, and `generate`
            # returns what it had (a speech-to-text run has nothing after the AR): cut short, not a result.
            if self.stop.is_set():
                self.error = RunCancelled("the run was cancelled")
            else:
                self.output = output
        finally:
            for hook in hooks:
                hook.remove()
            if self.streamer is not None:
                self.streamer.end()  # also when generate failed before it started streaming

    def _checkpoints(self) -> list[torch.nn.Module]:
        """The modules whose every call first checks `stop`: the backbone's decoder layers, the EnCodec decoder's
        layers (a stream's `codec.DecoderStream` calls them, never the decoder itself), the Vocos decoder."""
        vocoder = [self.model.vocoder] if self.model.vocoder is not None else []
        return [*self.model.model.backbone.layers, *self.model.codec_model.decoder.layers, *vocoder]

    def _check_stop(self, module, args) -> None:
        # The hooks are on the shared model: another run's calls (one started while this one winds down) pass them
        if self.stop.is_set() and threading.current_thread() is self:
            raise RunCancelled("the run was cancelled")

    def result(self):
        self.join()
        if self.error is not None:
            raise self.error
        return self.output

    def close(self) -> None:
        """End the run early (the page was left or the run cancelled) and wait for it to let go of the model."""
        self.stop.set()
        self.join()


def in_row_order(streamer: AudioIteratorStreamer) -> Iterator[torch.Tensor]:
    """The audio of a batch's rows, one row after the other (the rows of a batch stream side by side), as soon as it
    can be played in that order: each time a chunk comes, all the audio that is ready then, in one piece. Each piece
    is one update of the page, which costs it tens of milliseconds: a long text's chunks, one update each, fell ever
    further behind the generation. The first chunk ready still goes at once, with only those that came meanwhile."""
    order = RowOrder()
    for chunk in streamer:
        audio = [piece.audio for arrived in (chunk, *streamer.ready()) for piece in order.add(arrived)
                 if piece.audio is not None and piece.audio.numel()]
        if audio:
            yield torch.cat(audio)


# Seconds between two empty updates while a run that does not stream goes on (see `while_running`).
POLL_SECONDS = 0.5


def while_running(generation: threading.Thread) -> Iterator[dict]:
    """Updates that change nothing, every `POLL_SECONDS` until `generation` ends. Gradio ends an event whose page was
    left by closing its generator, which it can do only where the generator yields: a run that does not stream
    (beam search, --refine-on-stop, no ffmpeg, speech-to-text) would otherwise hold the model until its end."""
    while generation.is_alive():
        generation.join(POLL_SECONDS)
        yield gr.skip()


def wav_bytes(audio: torch.Tensor, sampling_rate: int) -> bytes:
    """One streamed piece as 16-bit WAV bytes: Gradio's stream reads them as they are (a float array would be
    normalised piece by piece, so the loudness would jump between pieces)."""
    buffer = io.BytesIO()
    samples = np.clip(audio.detach().float().cpu().numpy(), -1.0, 1.0)
    soundfile.write(buffer, samples, sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _reference_paths(files: list[str] | str | None, recording: str | None) -> list:
    """The reference voice's files: the uploads (a list, or one path as a caller in Python gives it) and the
    recording, each path as a `Path`: a name is the file's own, where the command line's string "a.wav;b.wav" names
    two (an upload named "a;b.wav" was "audio file not found: a"). What is no path is left to the CLI's checks."""
    if isinstance(files, (str, os.PathLike)):
        files = [files] if str(files) else []
    return [Path(file) if isinstance(file, str) else file
            for file in (*(files or ()), *([recording] if recording else ()))]


class Demo:
    """The page's actions on one loaded model: `speak` (TTS, streamed) and `transcribe` (STT)."""

    def __init__(self, model, processor):
        self.model, self.processor = model, processor
        self.sampling_rate = model.config.sampling_rate
        # What each tab's controls show before a user changes them (the model's generation config).
        self.control_defaults = {task: {flag: control.value for flag, control in
                                        sampler_controls(model.generation_config, model.config, task).items()}
                                 for task in ("tts", "stt")}
        # The page's output components by name, set by `build_page`; without "stream", nothing is streamed.
        self.outputs: dict[str, gr.components.Component] = {}
        self.running: Generation | None = None  # the last run started on the model

    def _changed(self, task: str, flags: dict) -> dict:
        """The controls of `task`'s tab that a user changed: one left at its default is not given, as a flag left out
        of a command line (the run is the same, and no warning speaks of a control nobody touched)."""
        defaults = self.control_defaults[task]
        return {flag: value for flag, value in flags.items() if flag not in defaults or value != defaults[flag]}

    def _start(self, progress: gr.Progress, kwargs: dict, streamer: AudioIteratorStreamer | None = None,
               **inputs) -> Generation:
        """`generate` started on `inputs` with the sampler settings `kwargs`, its AR steps shown on `progress`."""
        steps = kwargs.get("max_new_tokens", self.model.generation_config.max_new_tokens)
        # One run on the model at a time: Gradio frees the model's queue slot as soon as it cancels a run (Stop, a
        # page left), but closes the cancelled run's generator only at its next update (a streamed chunk, seconds
        # away), so the next run started beside the one it left going.
        if self.running is not None:
            self.running.close()
        stop = threading.Event()
        with setting_names(FLAG_NAMES):  # the run's context is copied here: its warnings name the controls' flags
            generation = Generation(self.model, streamer, stop, **inputs, **kwargs,
                                    stopping_criteria=StoppingCriteriaList([StepProgress(progress, steps, stop)]))
        generation.start()
        self.running = generation
        return generation

    def speak(self, text: str, references: list[str] | str | None = None, recording: str | None = None,
              language: str = "en", seed: float | None = None, stream_chunk: float = DEFAULT_CHUNK_SECONDS,
              random_voice: bool = False, language_switch: str = "keep", progress=gr.Progress(), **flags):  # noqa: B008 (Gradio's way to ask for a bar)
        """Text-to-speech: yields the audio as it is generated (streamed output; updates that change nothing before
        the run starts and while a run that does not stream goes on, see `while_running`), then the whole WAV, the
        seed used, its duration and the time taken."""
        yield gr.skip()  # at once: Gradio can cancel a run (Stop, a page left) only once it has had its first update
        with tempfile.TemporaryDirectory(prefix="valle_hf_") as folder, errors_on_page(), warnings_on_page():
            references = _reference_paths(references, recording)
            _check_switch("Random voice", random_voice)
            stream_chunk = _number("Stream chunk", stream_chunk)
            # in the page's words (the CLI's messages speak of an empty path, an unset variable, --no-prompt)
            if check_text(text) and not references and not random_voice:
                raise UsageError("no reference voice: upload or record a few seconds of speech, or tick Random voice")
            if references and random_voice:
                raise UsageError("Random voice speaks without a reference, but one was given: remove it, or untick "
                                 "Random voice")
            if stream_chunk is None:  # an emptied field: the default, as an emptied sampler control is its own
                stream_chunk = DEFAULT_CHUNK_SECONDS
            args = _arguments("tts", self._changed("tts", flags), text=text, references=references,
                              language=language, language_switch=language_switch, no_prompt=random_voice,
                              out_path=str(Path(folder) / "speech.wav"), stream_chunk=stream_chunk, stream=False)
            check_streaming(args)  # --stream-chunk's range, in the CLI's words, also for a run that will not stream
            inputs = prepare_inputs(args)
            kwargs = generation_kwargs(args, self.model)
            seed = _seed(seed)
            batch = self.processor(inputs["sentences"], prompt_audio=inputs["prompt"], language=language,
                                   sampling_rate=self.processor.feature_extractor.sampling_rate,
                                   language_switch=language_switch)
            stream = self.outputs.get("stream")
            streams = stream is not None and not not_streamable(kwargs, self.model)  # else played once complete
            streamer = AudioIteratorStreamer(stream_chunk) if streams else None
            started = time.perf_counter()
            generation = self._start(progress, kwargs, streamer, **batch.to(self.model.device),
                                     seeds=sentence_seeds(seed, len(inputs["sentences"])))
            with closing(generation):  # also when the page was left: end the run early, and wait for it to let go
                if streamer is None:
                    yield from while_running(generation)
                else:
                    for audio in in_row_order(streamer):
                        yield {stream: wav_bytes(audio, self.sampling_rate)}
                waveform = joined_sentences(generation.result(), inputs["sentences"])
            elapsed = time.perf_counter() - started
            save_audio(inputs["out"], waveform, self.sampling_rate)
            # The temporary folder is removed when Gradio resumes this generator, after it copied the file.
            yield {self.outputs["audio"]: str(inputs["out"]), self.outputs["seed"]: seed,
                   self.outputs["duration"]: waveform.numel() / self.sampling_rate, self.outputs["elapsed"]: elapsed}

    def transcribe(self, audio: str | None = None, seed: float | None = None, progress=gr.Progress(),  # noqa: B008
                   **flags) -> Iterator:
        """Speech-to-text: yields the IPA transcription of the audio and the seed used (after updates that change
        nothing while it runs, see `while_running`). The seed is the CLI's `--seed` for `--task stt`."""
        yield gr.skip()  # at once, as in `speak`
        with errors_on_page(), warnings_on_page():
            if not audio:
                raise UsageError("no speech to transcribe: upload or record it")
            args = _arguments("stt", self._changed("stt", flags), references=_reference_paths(audio, None),
                              out_path=None)
            inputs = prepare_inputs(args)
            kwargs = generation_kwargs(args, self.model)
            batch = self.processor(audio=[inputs["audio"]],
                                   sampling_rate=self.processor.feature_extractor.sampling_rate).to(self.model.device)
            seed = _seed(seed)
            generation = self._start(progress, kwargs, **batch, task="stt", seeds=[seed])
            with closing(generation):  # also when the page was left: end the run early, and wait for it to let go
                yield from while_running(generation)
                yield self.processor.decode(generation.result()[0].cpu()), seed


INTRO = """# VALL-E text-to-speech
Type a text, give a reference voice (a few seconds of speech: upload one or more files, or record), and press
**Speak**: the model answers in that voice. The audio starts playing while the rest is generated. The sampler
settings are those of the command line (`python -m valle_hf --help`), with this model's defaults.
"""


def build_page(model, processor, model_name: str, stream: bool = True) -> gr.Blocks:
    """The page for one loaded model and processor (`model_name`, Markdown, says which on the page).

    Both tabs share one queue slot (`concurrency_id="model"`), so requests from any number of browser tabs run one
    at a time on the one model. `stream`: also play the audio while it is generated (Gradio encodes that stream with
    ffmpeg)."""
    demo = Demo(model, processor)
    # Every hour, Gradio removes the uploaded and generated files older than an hour: a demo left running for days
    # does not fill its disk.
    # the browser tab's title is plain text: the name without its Markdown code marks
    with gr.Blocks(title=f"VALL-E: {model_name.replace('`', '')}", delete_cache=(3600, 3600)) as page:
        gr.Markdown(f"{INTRO}\nModel: {model_name}")
        with gr.Tab("Text to speech"):
            _tts_tab(demo, stream)
        with gr.Tab("Speech to text"):
            _stt_tab(demo)
    return page.queue(default_concurrency_limit=1)


def _tts_tab(demo: Demo, stream: bool) -> None:
    """The text-to-speech tab: text, reference voice and options beside the speech (`_tts_outputs`), the sampler
    settings below; Speak runs `demo.speak` (the API's /tts)."""
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(label="Text", lines=4, placeholder="The birch canoe slid on the smooth planks.",
                              elem_id="tts-text")
            # The run gets what the page's API sent, as sent: Gradio's Textbox makes any JSON a str, so a list of
            # texts was spoken as "['Hi.', 'Bye.']" without a word, where the run's `check_text` refuses a non-str.
            # (The page itself always sends a str; a subclass would make Gradio write a .pyi into the package.)
            text.preprocess = lambda payload: payload
            references = gr.File(label="Reference voice (one or more audio files)", file_count="multiple",
                                 file_types=["audio"], elem_id="tts-references")
            recording = gr.Audio(label="... or record one", sources=["microphone"], type="filepath")
            with gr.Row():
                language = gr.Dropdown(["auto", *MODEL_LANGUAGES], value="en", label="Language",
                                       allow_custom_value=True, info="or an espeak-ng code; IPA passes through")
                # no precision, as for the integer controls: `_seed` refuses 2.5, which Gradio would round
                seed = gr.Number(-1, label="Seed", info="-1: a random seed")
            with gr.Row():
                random_voice = gr.Checkbox(False, label="Random voice (no reference: --no-prompt)",
                                           elem_id="tts-random-voice")
                language_switch = gr.Dropdown(["keep", "remove"], value="keep",
                                              label="Language-switch markers (--language-switch)",
                                              info="espeak's (en)...(fr) around a word in another language")
            button, stop = _run_buttons("tts", "Speak")
        with gr.Column():
            _tts_outputs(demo.outputs, stream)
    with gr.Accordion("Sampler settings", open=False):
        settings = _grid(sampler_controls(demo.model.generation_config, demo.model.config, "tts"))
        stream_chunk = gr.Number(DEFAULT_CHUNK_SECONDS, label="stream chunk (--stream-chunk)",
                                 info=f"seconds of codes per streamed chunk; allowed: {CHUNK_SECONDS_RULE}")
    _run_on_click(button, stop, demo.speak, "tts", list(demo.outputs.values()),
                  inputs=dict(text=text, references=references, recording=recording, language=language, seed=seed,
                              stream_chunk=stream_chunk, random_voice=random_voice, language_switch=language_switch,
                              **settings))


def _tts_outputs(outputs: dict[str, gr.components.Component], stream: bool) -> None:
    """The speech as it is generated (only when `stream`), the whole WAV, and the run's seed, duration and time taken,
    placed here and put in `outputs` under the names `Demo.speak` yields to."""
    if stream:
        outputs["stream"] = gr.Audio(label="Speech, as it is generated", streaming=True, autoplay=True,
                                     interactive=False, elem_id="tts-stream")
    outputs["audio"] = gr.Audio(label="Speech (WAV)", type="filepath", interactive=False,
                                buttons=["download"], elem_id="tts-audio")
    with gr.Row():
        outputs["seed"] = gr.Number(label="Seed used", precision=0, interactive=False, elem_id="tts-seed")
        outputs["duration"] = gr.Number(label="Duration (s)", precision=2, interactive=False, elem_id="tts-duration")
        outputs["elapsed"] = gr.Number(label="Time taken (s)", precision=2, interactive=False, elem_id="tts-elapsed")


def _stt_tab(demo: Demo) -> None:
    """The speech-to-text tab: the speech beside its IPA, the sampler settings below; Transcribe runs
    `demo.transcribe` (the API's /stt)."""
    with gr.Row():
        with gr.Column():
            speech = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath", elem_id="stt-audio")
            seed = gr.Number(-1, label="Seed", info="-1: a random seed")
            button, stop = _run_buttons("stt", "Transcribe")
        with gr.Column():
            ipa = gr.Textbox(label="IPA", lines=4, interactive=False, elem_id="stt-ipa")
            seed_used = gr.Number(label="Seed used", precision=0, interactive=False, elem_id="stt-seed")
    with gr.Accordion("Sampler settings", open=False):
        settings = _grid(sampler_controls(demo.model.generation_config, demo.model.config, "stt"))
    _run_on_click(button, stop, demo.transcribe, "stt", [ipa, seed_used],
                  inputs=dict(audio=speech, seed=seed, **settings))


def _run_buttons(task: str, label: str) -> tuple[gr.Button, gr.Button]:
    """A tab's run button, named `label`, and its Stop button, side by side (elem_ids `{task}-button`, `{task}-stop`,
    which the browser tests find them by)."""
    with gr.Row():
        run = gr.Button(label, variant="primary", elem_id=f"{task}-button")
        stop = gr.Button("Stop", variant="stop", elem_id=f"{task}-stop")
    return run, stop


def _run_on_click(run: gr.Button, stop: gr.Button, action, api_name: str, outputs, inputs: dict) -> None:
    """`run` calls `action` with `inputs` by parameter name (the API's /`api_name`), in the model's one queue slot;
    `stop` cancels that run."""
    for parameter, component in inputs.items():
        if isinstance(component, (gr.File, gr.Audio)):
            _uploads_only(component, parameter)
        _named_refusals(component, parameter)
    running = run.click(action, inputs_kwargs=inputs, outputs=outputs, api_name=api_name, concurrency_id="model",
                        concurrency_limit=1)
    # Gradio closes a cancelled run's generator, which ends the generation and lets the model go
    stop.click(None, cancels=[running], api_visibility="private")


def _uploads_only(component: gr.File | gr.Audio, parameter: str) -> None:
    """Make the API's `parameter`, `component`'s file(s), refuse what is not an upload with a message naming
    gradio_client's `handle_file`. gradio_client sends a plain path as text, which the server cannot read (it names a
    file of the caller's machine); Gradio's own check of the payload, before the run, refused it as a bare "Error"
    with a traceback in the server's log."""
    expected = component.data_model

    def model_validate(cls, payload, **kwargs):
        try:
            return expected.model_validate(payload, **kwargs)
        except pydantic.ValidationError:
            raise gr.Error(f"{parameter}: expected an uploaded file, got {reprlib.repr(payload)}: send a file with "
                           "gradio_client's handle_file(path), not its path as text", print_exception=False) from None

    # the same name: the API's description of the parameter stays Gradio's own
    component.data_model = type(expected.__name__, (expected,), {"model_validate": classmethod(model_validate)})


def _named_refusals(component: gr.components.Component, parameter: str) -> None:
    """Make Gradio's own refusal of the API's `parameter` (a text file for an audio input, which the browser refuses
    before it is sent but the API does not; a value outside a dropdown's choices) name the parameter, without a
    traceback in the server's log: "Value: float64 is not in the list of choices" left a caller of the API's forty
    parameters to guess which."""
    preprocess = component.preprocess

    def quiet_preprocess(payload):
        try:
            return preprocess(payload)
        except gr.Error as error:
            raise gr.Error(f"{parameter}: {error.message}", print_exception=False) from None

    component.preprocess = quiet_preprocess


def _grid(controls: dict[str, gr.components.Component], columns: int = 3) -> dict[str, gr.components.Component]:
    """Place the controls in rows of `columns`; returns them."""
    names = list(controls)
    for start in range(0, len(names), columns):
        with gr.Row():
            for name in names[start: start + columns]:
                controls[name].render()
    return controls
