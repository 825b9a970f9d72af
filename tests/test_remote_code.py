"""A converted directory carries its code: in a process where `import valle_hf` fails, `trust_remote_code=True`
loads it (with `AutoModel` too, the decoder alone) and it speaks; without it, transformers asks for it; a missing
runtime dependency is named in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Runs in a fresh interpreter where `import valle_hf` fails, as where it is not installed: transformers has only the
# code saved in the directory. Loaded once with `soxr` unimportable too, then again with it.
SCRIPT = """
import sys

sys.modules["valle_hf"] = sys.modules["soxr"] = None
import torch
from transformers import AutoModel, AutoProcessor, pipeline

directory, prompt = sys.argv[1], sys.argv[2]
try:
    pipeline("text-to-speech", model=directory)
except ValueError as error:
    print("@without trust_remote_code:", " ".join(str(error).split()))
try:
    print("@processor without trust_remote_code:", type(AutoProcessor.from_pretrained(directory)).__name__)
except ValueError as error:
    print("@processor without trust_remote_code:", " ".join(str(error).split()))
try:
    pipeline("text-to-speech", model=directory, trust_remote_code=True)
except ImportError as error:
    print("@without soxr:", str(error))
del sys.modules["soxr"]
for name in [name for name in sys.modules if name.startswith("transformers_modules")]:
    del sys.modules[name]  # the half-imported remote code of the failed attempt
tts = pipeline("text-to-speech", model=directory, trust_remote_code=True)
speech = tts("Hello there.", processor_kwargs={"prompt_audio": prompt, "input_prompt_length": 1.0},
             generate_kwargs={"temperature": 0.0, "max_new_tokens": 4, "min_new_tokens": 4})
print("@model:", type(tts.model).__module__, type(tts.model).__name__)
print("@processor:", type(tts.processor).__name__, type(tts.processor.feature_extractor).__name__)
print("@spoke:", speech["audio"].size, speech["sampling_rate"])
print("@pipeline:", type(tts).__module__, type(tts).__name__)
decoder = AutoModel.from_pretrained(directory, trust_remote_code=True)
same = all(torch.equal(mine, its) for mine, its in zip(decoder.state_dict().values(),
                                                       tts.model.model.state_dict().values(), strict=True))
print("@decoder:", type(decoder).__name__, same)
asr = pipeline("automatic-speech-recognition", model=directory, trust_remote_code=True)
transcript = asr(prompt, temperature=0.0, max_new_tokens=6, min_new_tokens=6)["text"]
ids = tts.model.generate(**tts.processor(audio=prompt), task="stt", temperature=0.0, max_new_tokens=6, min_new_tokens=6)
print("@asr:", type(asr).__module__, type(asr).__name__, transcript == tts.processor.decode(ids[0]), bool(transcript))
takes = tts(["Hello there.", "Another, longer text."], batch_size=2, processor_kwargs={"prompt_audio": prompt},
            generate_kwargs={"num_return_sequences": 2, "max_new_tokens": 4, "min_new_tokens": 4, "seeds": 5})
print("@takes:", [len(item["audio"]) for item in takes], takes[0]["audio"][0].shape != takes[1]["audio"][0].shape
      or bool((takes[0]["audio"][0] != takes[1]["audio"][0]).any()))
"""


def run_without_valle_hf(tmp_path, directory, prompt) -> dict[str, str]:
    """Run SCRIPT; returns its printed `@label: value` lines (a line may start with transformers' [y/N] prompt, which
    is declined: stdin is closed)."""
    script = tmp_path / "remote.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, str(script), str(directory), str(prompt)], env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(line.split("@", 1)[1].split(": ", 1) for line in done.stdout.splitlines() if "@" in line)


def test_a_converted_directory_carries_its_code(converted_dir):
    config = json.loads((converted_dir / "config.json").read_text())
    processor = json.loads((converted_dir / "processor_config.json").read_text())
    names = [*config["auto_map"].values(), *processor["auto_map"].values(),
             *processor["feature_extractor"]["auto_map"].values()]
    files = {path.name for path in converted_dir.iterdir()}
    assert {name.split(".")[0] + ".py" for name in names} <= files
    assert not {"training.py", "conversion.py", "loading.py", "cli.py"} & files  # training (peft) is not model code
    # transformers' pipeline() builds the pipeline that config.json names, from the code saved beside it
    assert {task["impl"].split(".")[0] + ".py" for task in config["custom_pipelines"].values()} <= files
    assert set(config["custom_pipelines"]) == {"text-to-speech", "text-to-audio", "automatic-speech-recognition"}
    # AutoModel loads the decoder alone, and the speech-recognition pipeline loads AutoModelForSpeechSeq2Seq
    assert config["auto_map"]["AutoModel"].endswith(".VallEModel")
    assert config["auto_map"]["AutoModelForSpeechSeq2Seq"].endswith(".VallEForConditionalGeneration")


@pytest.mark.subprocess
def test_trust_remote_code_speaks_without_valle_hf(tmp_path, converted_dir, prompt_wav):
    printed = run_without_valle_hf(tmp_path, converted_dir, prompt_wav)
    assert "trust_remote_code=True" in printed["without trust_remote_code"]
    assert "trust_remote_code=True" in printed["processor without trust_remote_code"]  # not a bare tokenizer
    assert "pip install soxr" in printed["without soxr"]  # one line, naming the package
    assert not printed["model"].startswith("valle_hf") and printed["model"].endswith("VallEForConditionalGeneration")
    assert printed["processor"] == "VallEProcessor VallEFeatureExtractor"  # not a bare tokenizer
    samples, rate = map(int, printed["spoke"].split())
    assert rate == 24000 and samples > 0
    # VALL-E's pipeline, from the directory: each text keeps its own takes, and one seed serves every text
    assert printed["pipeline"].startswith("transformers_modules") and printed["pipeline"].endswith(
        "pipeline VallETextToAudioPipeline")
    assert printed["takes"] == "[2, 2] True"
    assert printed["decoder"] == "VallEModel True"  # AutoModel: the decoder alone, with the saved weights
    # VALL-E's speech recognition, from the directory: what generate(task="stt") transcribes
    assert printed["asr"].startswith("transformers_modules") and printed["asr"].endswith(
        "pipeline VallESpeechRecognitionPipeline True True")


def test_the_decoder_alone_is_saved_with_its_code(tmp_path):
    from conftest import tiny_config

    from valle_hf import VallEModel

    VallEModel(tiny_config()).save_pretrained(tmp_path)
    module, name = json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoModel"].split(".")
    assert name == "VallEModel" and (tmp_path / f"{module}.py").is_file()
