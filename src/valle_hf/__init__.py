"""valle-hf: VALL-E (e-c-k-e-r/vall-e flavour) text-to-speech and speech-to-text on Hugging Face Transformers.

Importing the package registers the model with the Auto classes, so `AutoModelForTextToWaveform`, `AutoModel` (the
decoder alone, `VallEModel`), `AutoProcessor`, `AutoFeatureExtractor` and `pipeline("text-to-speech",
model=<directory>)` find it like a built-in model (the pipeline's call is checked first for VALL-E models:
`VallETextToAudioPipeline`), and `pipeline("automatic-speech-recognition", model=<directory>)` runs its STT task
(`VallESpeechRecognitionPipeline`). The classes are also registered for remote code: `save_pretrained` writes an
`auto_map` and copies the modules that define them (and the modules they import) beside the weights, so that a saved
directory or Hub upload loads with `trust_remote_code=True` where this package is not installed.
"""

import os
import signal
import sys
import threading


def _ended_while_loading(signum, frame):
    """Ctrl-C or SIGTERM while a command (`_loading_as_a_command`) loads torch, transformers and its own modules
    (seconds), before its entry point takes over (`errors.entry_point`, which replaces this handler): nothing is
    written yet, so the command ends at once, as an entry point ends on either, with one line and the shell's status
    (130, 143). (Raised inside the libraries' imports, a KeyboardInterrupt can come out as another error, with a
    traceback; a SIGTERM ended the command in silence.)"""
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    os._exit(128 + signum)


# The programs of this package's checkout (beside its `src`) that are commands: those in its scripts, examples and
# benchmarks folders, and its web demo. Other files there are not (pytest or IPython installed in a `.venv` of the
# checkout, a user's script).
_CHECKOUT_COMMAND_FOLDERS, _CHECKOUT_COMMAND_FILES = ("scripts", "examples", "benchmarks"), ("app.py",)


def _loading_as_a_command() -> bool:
    """Whether this import is a command's own: `python -m valle_hf[.module]`, or a program of this checkout
    (`_CHECKOUT_COMMAND_FOLDERS`, `_CHECKOUT_COMMAND_FILES`: `python scripts/prepare_dataset.py`, `python
    examples/tts.py`, `python app.py`, `python -m benchmarks`). A program, module, test run or notebook of the user's
    that imports the package keeps its own Ctrl-C and SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        return False
    command = getattr(sys, "orig_argv", [])
    module = command[command.index("-m") + 1] if "-m" in command[:-1] else ""
    if module == __name__ or module.startswith(f"{__name__}."):
        return True
    program = getattr(sys.modules.get("__main__"), "__file__", None)
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    if program is None or not os.path.isfile(os.path.join(checkout, "pyproject.toml")):
        return False
    within = os.path.relpath(os.path.realpath(program), checkout).split(os.sep)
    if len(within) == 1:
        return within[0] in _CHECKOUT_COMMAND_FILES
    return len(within) == 2 and within[0] in _CHECKOUT_COMMAND_FOLDERS


# Each signal's default handling, which a command's own loading replaces; a handler set before (a program's) is kept.
_DEFAULT_HANDLING = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
if _loading_as_a_command():
    for _signum, _default in _DEFAULT_HANDLING.items():
        if signal.getsignal(_signum) == _default:
            signal.signal(_signum, _ended_while_loading)

from .hardware import quiet_torchao_import  # noqa: E402  (after the handlers: it imports torch)

with quiet_torchao_import():  # transformers imports torchao (the [int8] extra) where it is installed
    from transformers import (
        AutoConfig,
        AutoFeatureExtractor,
        AutoModel,
        AutoModelForSpeechSeq2Seq,
        AutoModelForTextToWaveform,
        AutoProcessor,
        AutoTokenizer,
    )

    from .configuration import VallEConfig, VallEGenerationConfig
    from .feature_extraction import VallEFeatureExtractor
    from .generation import VallEGenerateOutput, VallEGenerationMixin
    from .modeling import VallEForConditionalGeneration, VallEModel, VallEPreTrainedModel
    from .pipeline import VallESpeechRecognitionPipeline, VallETextToAudioPipeline, register_pipeline
    from .processing import VallEProcessor
    from .tokenization import PhonemeTokenizerFast
    from .vocos import VocosConfig, VocosModel

__version__ = "0.1.0"

AutoConfig.register("valle", VallEConfig, exist_ok=True)
AutoConfig.register("valle_vocos", VocosConfig, exist_ok=True)
AutoModel.register(VallEConfig, VallEModel, exist_ok=True)
AutoModelForTextToWaveform.register(VallEConfig, VallEForConditionalGeneration, exist_ok=True)
# the class pipeline("automatic-speech-recognition") loads from a name: VALL-E's STT task (speech in, phonemes out)
AutoModelForSpeechSeq2Seq.register(VallEConfig, VallEForConditionalGeneration, exist_ok=True)
AutoFeatureExtractor.register(VallEConfig, VallEFeatureExtractor, exist_ok=True)
AutoProcessor.register(VallEConfig, VallEProcessor, exist_ok=True)
# a folder saved without its processor: the missing tokenizer.json said so, not transformers' backend error
AutoTokenizer.register(VallEConfig, PhonemeTokenizerFast, exist_ok=True)

VallEConfig.register_for_auto_class()
VallEModel.register_for_auto_class("AutoModel")
VallEForConditionalGeneration.register_for_auto_class("AutoModelForTextToWaveform")
VallEFeatureExtractor.register_for_auto_class()
VallEProcessor.register_for_auto_class()
register_pipeline()

__all__ = [
    "VallEConfig",
    "VallEFeatureExtractor",
    "VallEForConditionalGeneration",
    "VallEGenerationConfig",
    "VallEGenerateOutput",
    "VallEGenerationMixin",
    "VallEModel",
    "VallEPreTrainedModel",
    "VallEProcessor",
    "VallESpeechRecognitionPipeline",
    "VallETextToAudioPipeline",
    "VocosConfig",
    "VocosModel",
]
