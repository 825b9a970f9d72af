"""Shared test fixtures: the parity fixture set (found through VALLE_FIXTURES) and small models built from it."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import socket
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The test models are tiny: one thread avoids intra-op overhead and contention on small shared machines. The
# commands the tests start inherit it: with a thread per core in each of them, beside the other test processes, every
# op of a child waited for a descheduled thread of its own (milliseconds per op of a tiny model).
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"
SHARED = REPO.parent / "shared"
# What the package caches (converted models, precision measurements) goes to a directory of this run, never to the
# user's own cache.
os.environ["VALLE_HF_CACHE"] = tempfile.mkdtemp(prefix="valle_hf_test_cache_")


def _pin_precision_measurements() -> None:
    """`--dtype auto` (the CLI's default) measures this machine once per cache directory. On a busy test machine
    bfloat16 can look faster in one session and not in the next, and CLI runs compared with each other or with
    `generate` would then differ from one session to the next: the tests' cache starts with float32 measured fastest
    (the tests of the choice itself replace the measurement)."""
    from valle_hf import hardware

    key = hardware._machine_key(torch.device("cpu"), 1024, 4096)
    hardware._measurements_file().write_text(json.dumps({key: {"float32": 1.0, "bfloat16": 2.0, "float16": 2.0,
                                                               "int8": 2.0}}), encoding="utf-8")


_pin_precision_measurements()


def load_script(path: Path):
    """Import a script (scripts/, examples/) as a module, to call its main(argv) in-process."""
    name = f"_valle_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script is executed
    spec.loader.exec_module(module)
    return module


def subprocess_environment() -> dict[str, str]:
    """The environment of a command the tests start: this checkout's package (and, as every child of the tests
    inherits, one thread per process)."""
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "TOKENIZERS_PARALLELISM": "false"}


# The start of a script that says, as each process exits, whether its process group is still up: one whose process
# left it up could abort in the interpreter's exit. One write of a whole line, which the processes' lines do not cut.
GROUP_AT_EXIT = ("import atexit, os\nimport torch.distributed\natexit.register(lambda: os.write(2, "
                 "f'group up at exit: {torch.distributed.is_initialized()}\\n'.encode()))\n")


def accelerate_launch(processes: int) -> list[str]:
    """`accelerate launch` of `processes` processes on this machine (on CPUs: torchrun starts them, gloo joins them),
    on a free port, without accelerate's warnings about defaults; the script or `-m module` and its arguments follow."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port)]


class Upload:
    """A web framework's upload of an audio file (Werkzeug's FileStorage, Django's UploadedFile): it reads like a
    binary file and has the file's name, but is no io.IOBase. Like FileStorage, it passes every file method on to the
    stream it holds, `content` (bytes, or a str for a text upload)."""

    def __init__(self, name: str, content: bytes | str):
        self.name = name
        self._stream = io.BytesIO(content) if isinstance(content, bytes) else io.StringIO(content)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextmanager
def logged_warnings():
    """Capture what transformers' logger (and so this package's, its children) prints; `.out` after the block."""
    from transformers.testing_utils import CaptureLogger
    from transformers.utils import logging

    with CaptureLogger(logging.get_logger("transformers")) as captured:
        yield captured


def missing_fixtures(message: str):
    """A fixture set is absent: skip the test, or fail it where `VALLE_REQUIRE_FIXTURES=1` says every fixture set must
    be there (the mutation run: a skipped test kills no mutant, so a missing set would pass for a surviving one)."""
    if os.environ.get("VALLE_REQUIRE_FIXTURES", "") not in ("", "0"):
        pytest.fail(f"{message}; VALLE_REQUIRE_FIXTURES is set, so this is an error", pytrace=False)
    pytest.skip(message)


# mutmut's first run (MUTANT_UNDER_TEST=stats) maps each mutated function to the tests that called it, collected at
# each test's teardown; later each mutant runs only those tests. A function that only a session or module fixture
# calls would be mapped to the first test that set the fixture up, and never tested with the others. This plugin gives
# every test the calls made while its fixtures were set up. It is registered as a plugin, not as this conftest's
# hooks: pytest asks a conftest below the root only about function-scoped fixtures, a session fixture's setup hook
# goes to the session's (root-level) plugins. Outside that run it is not registered.
class _FixtureCalls:
    def __init__(self):
        self.calls_by_fixture: dict = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        from mutmut.state import state

        calls = state()._stats
        before = set(calls)
        calls.clear()
        try:
            yield
        finally:
            self.calls_by_fixture[fixturedef] = set(calls)
            calls |= before

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item):
        from mutmut.state import state

        for fixturedefs in item._fixtureinfo.name2fixturedefs.values():
            for fixturedef in fixturedefs:
                state()._stats.update(self.calls_by_fixture.get(fixturedef, ()))


def pytest_configure(config):
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        config.pluginmanager.register(_FixtureCalls(), "valle-mutmut-fixture-calls")


def fixture_dir() -> Path:
    return Path(os.environ.get("VALLE_FIXTURES", SHARED / "fixtures" / "tiny"))


def vocos_fixture_dir() -> Path:
    """The Vocos fixture set (a checkpoint in the Hub repo's layout, and cases the vocos package computed)."""
    return Path(os.environ.get("VALLE_VOCOS_FIXTURES", SHARED / "fixtures" / "vocos-tiny"))


@pytest.fixture(scope="session")
def vocos_checkpoint_dir() -> Path:
    root = vocos_fixture_dir()
    if not (root / "config.yaml").is_file():
        missing_fixtures(f"Vocos fixture set not found at {root} (set VALLE_VOCOS_FIXTURES to a fixture directory)")
    return root


class FixtureSet:
    """One fixture set: the original's checkpoint, its cases (json metadata + tensors) and loss cases."""

    def __init__(self, root: Path):
        from safetensors.torch import load_file

        self.root = root
        self.checkpoint = root / "fp32.sft"
        self.meta = json.loads((root / "cases.json").read_text())
        self.tensors = load_file(str(root / "cases.safetensors"))
        self.cases = {case["name"]: case for case in self.meta["cases"]}

    def tensor(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def case_tensor(self, case: dict, key: str) -> torch.Tensor | None:
        name = case["tensors"].get(key)
        return None if name is None else self.tensors[name]

    def cases_of_kind(self, kind: str) -> list[dict]:
        return [case for case in self.meta["cases"] if case["kind"] == kind]

    def loss_cases(self):
        from safetensors.torch import load_file

        meta = json.loads((self.root / "loss_cases.json").read_text())
        return meta, load_file(str(self.root / "loss_cases.safetensors"))


def dry_penalty_by_definition(history, vocab, multiplier, base, allowed, max_match, breakers=()):
    """Penalty per token by definition: the longest n such that the last n tokens followed by t already
    occur in the history (n capped, contexts may not contain breakers); penalised iff n >= allowed."""
    size = len(history)
    penalty = [0.0] * vocab
    for token in range(vocab):
        best = 0
        for n in range(1, min(max_match, size) + 1):
            context = history[size - n :]
            if any(b in context for b in breakers):
                break
            gram = context + [token]
            if any(history[j : j + n + 1] == gram for j in range(size - n)):
                best = n
        if token not in breakers and best >= allowed:
            penalty[token] = multiplier * base ** (best - allowed)
    return penalty


# `generate` settings with every sampler off and the prompt kept whole, as before the shipped generation config held
# the original CLI's tuned defaults: tests that exercise one setting start from these, so the defaults never leak in.
# The NAR runs in float32, where its results do not depend on the batch's shape (bfloat16 rounding can).
PLAIN_SETTINGS = dict(temperature=1.0, repetition_penalty=1.0, input_prompt_length=0, nar_dtype="float32")


def greedy_settings(**overrides) -> dict:
    """`generate` keyword arguments for a plain greedy run of level 0 only, returning the output object."""
    return {**PLAIN_SETTINGS, "temperature": 0.0, "max_levels": 0, "output_audio": False,
            "return_dict_in_generate": True, **overrides}


def stop_at(model, step: int, **inputs):
    """A copy of `model` whose plain greedy run on `inputs` (one row: `input_ids`, `prompt_codes`, ...) makes the
    model's own tokens and emits the stop token at `step` (0-based), one logit above the top one.

    The level-0 head's stop row is replaced by a vector orthogonal to the hidden states of the earlier steps (the
    construction the parity fixtures use to make their random model stop), so before `step` the stop logit is its
    bias: half the smallest top logit of those steps, positive, so that length penalties can move it either way.
    """
    import copy

    states = []
    head = model.classifiers[0]
    handle = head.register_forward_hook(lambda module, args, output: states.append(args[0][0, -1].double()))
    try:
        out = model.generate(**inputs, **greedy_settings(max_new_tokens=step + 1, min_new_tokens=step + 1,
                                                         output_logits=True))
    finally:
        handle.remove()
    stop = model.config.stop_token_id
    top = torch.stack([logits[0, :stop].max() for logits in out.logits]).double()
    assert (top > 0).all(), "the top logit of every step should be positive"
    bias = 0.5 * float(top[:step].min()) if step else 0.0
    target = states[step]
    if step:
        basis = torch.linalg.qr(torch.stack(states[:step]).T).Q
        target = target - basis @ (basis.T @ target)
    stopping = copy.deepcopy(model)
    with torch.no_grad():
        stopping.classifiers[0].weight[stop] = (target * (top[step] + 1.0 - bias) / target.dot(target)).float()
        stopping.classifiers[0].bias[stop] = bias
    check = stopping.generate(**inputs, **greedy_settings(max_new_tokens=step + 2))
    assert check.stopped.tolist() == [True] and torch.equal(check.codes[0, :, 0], out.codes[0, :step, 0])
    return stopping


def original_generate_kwargs(case: dict) -> dict:
    """The settings the original ran an end-to-end fixture case with, as `generate` keyword arguments.

    Every sampler setting is passed, so the model's own (tuned) generation defaults never leak into a parity run. The
    case's prompt is stored as the codes the original used, so it is kept whole (`input_prompt_length=0`).
    """
    ar = case.get("ar_kwargs") or case["kwargs"]
    kwargs = dict(
        max_new_tokens=ar["max_steps"],
        temperature=ar["sampling_temperature"],
        min_temperature=ar["sampling_min_temperature"],
        top_p=ar["sampling_top_p"],
        top_k=ar["sampling_top_k"],
        min_p=ar["sampling_min_p"],
        repetition_penalty=ar["sampling_repetition_penalty"],
        repetition_penalty_decay=ar["sampling_repetition_penalty_decay"],
        stop_length_penalty=ar["sampling_length_penalty"],
        mirostat_tau=ar["sampling_mirostat_tau"],
        mirostat_eta=ar["sampling_mirostat_eta"],
        dry_multiplier=ar["sampling_dry_multiplier"],
        dry_base=ar["sampling_dry_base"],
        dry_allowed_length=ar["sampling_dry_allowed_length"],
    )
    for flag in ("layer_skip", "refine_on_stop"):  # off in the shipped config too; passed when a case turns one on
        if ar[f"sampling_{flag}"]:
            kwargs[flag] = True
    if ar["sampling_beam_width"] > 1:
        kwargs["num_beams"] = ar["sampling_beam_width"]
    if "nar_kwargs" in case:
        kwargs.update(
            prefix_silence=ar["prefix_silence"],
            input_prompt_prefix=ar["input_prompt_prefix"],
            input_prompt_length=0,
            nar_dtype="float32",  # the original computed in float32
            max_levels=case["nar_kwargs"]["max_levels"],
            nar_temperature=case["nar_kwargs"]["sampling_temperature"],
        )
    return kwargs


def case_inputs(fixtures, model, case):
    """The unified-id sequence and codes of one forward case, rebuilt from the case's stored inputs."""
    from valle_hf.layout import stt_sequence, tts_sequence

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
    """The fixture cases of one forward pass (AR step, NAR step, STT step)."""
    return [case for case in fixtures.meta["cases"] if case["kind"] in ("ar_step", "nar_step", "stt_step")]


@pytest.fixture(scope="session")
def fixtures() -> FixtureSet:
    root = fixture_dir()
    if not (root / "cases.json").is_file():
        missing_fixtures(f"fixture set not found at {root} (set VALLE_FIXTURES to a fixture directory)")
    return FixtureSet(root)


@pytest.fixture(scope="session")
def converted(fixtures):
    """The fixture set's original checkpoint converted to our layout (float32, tiny random codec and Vocos), with
    the processor of the released tokenizer shipped in the package."""
    from valle_hf.conversion import convert_checkpoint

    return convert_checkpoint(fixtures.checkpoint, codec="tiny-random", vocoder="tiny-random")


@pytest.fixture(scope="session")
def fixture_model(converted):
    """The converted fixture model, in eval mode."""
    return converted[0]


# The released tokenizer's ids for an IPA text, as the original's tokenizer.json gives them.
HELLO_IPA = "həlˈoʊ wˈɜːld."
HELLO_IDS = [1, 22, 111, 100, 4, 37, 115, 169, 11, 2]


@pytest.fixture(scope="session")
def processor():
    """The processor of the released phoneme tokenizer shipped with the package."""
    from valle_hf.processing import VallEProcessor

    return VallEProcessor.from_tokenizer_file()


@pytest.fixture(scope="session")
def tokenizer_file() -> Path:
    """The released model's phoneme tokenizer, as the package ships it."""
    from valle_hf.tokenization import packaged_tokenizer_file

    return packaged_tokenizer_file()


def tiny_config(**overrides):
    """A tiny random VallEConfig (with a tiny codec) for tests that need no reference numbers."""
    from valle_hf.codec import tiny_random_codec
    from valle_hf.configuration import VallEConfig

    values = dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=2,
                  codec_config=tiny_random_codec().config.to_dict())
    values.update(overrides)
    return VallEConfig(**values)


def reactive_model(config=None, seed: int = 0):
    """A tiny random model (default: `tiny_config()`) that reacts to every input, in eval mode.

    Its decoder weights come from `valle_hf.loading.reactive_init_` (the default init makes a model that ignores its
    prompt and text), drawn from a generator seeded with `seed`; its codec encodes (see `tiny_random_codec`).
    """
    from valle_hf.codec import tiny_random_codec
    from valle_hf.loading import reactive_init_
    from valle_hf.modeling import VallEForConditionalGeneration

    model = VallEForConditionalGeneration(config if config is not None else tiny_config())
    reactive_init_(model, torch.Generator().manual_seed(seed))
    model.codec_model.load_state_dict(tiny_random_codec().state_dict())
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny reactive model of `reactive_model()`, shared by the tests that do not change it."""
    return reactive_model()


@pytest.fixture(scope="session")
def tiny_random():
    """The embedded `tiny-random` model and its processor (`load_model_and_processor("tiny-random")`)."""
    from valle_hf.loading import load_model_and_processor

    return load_model_and_processor("tiny-random")


@pytest.fixture(scope="session")
def converted_dir(tmp_path_factory, converted) -> Path:
    """The converted fixture model saved with its processor: a directory `from_pretrained` loads."""
    from valle_hf.conversion import save_converted

    return save_converted(*converted, tmp_path_factory.mktemp("converted"), overwrite=True)


@pytest.fixture(scope="session")
def prompt_wav() -> Path:
    return REPO / "examples" / "prompt.wav"


@pytest.fixture
def hub_unreachable(monkeypatch):
    """The Hub as seen without a network: nothing in the cache, and every request fails to connect."""
    import huggingface_hub
    from huggingface_hub import constants

    def unreachable(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)


@contextmanager
def served_hub(monkeypatch, repos: dict, revisions: dict | None = None, token: str | None = None):
    """A `hub_server.LocalHub` serving `repos` (at `revisions`, to `token` only) to this process: huggingface_hub's
    endpoint points at it, online, for the block; pass each load a fresh `cache_dir` so that nothing cached answers
    instead."""
    import transformers.utils.hub
    from hub_server import LocalHub
    from huggingface_hub import constants

    with LocalHub(repos, revisions, token) as hub:
        # transformers' shared HfApi keeps the endpoint of the first block that made it
        monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        yield hub
