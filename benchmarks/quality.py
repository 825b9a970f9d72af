"""Quality of each precision against float32, on the parity fixtures (the original's checkpoint and greedy runs).

The fixture set is found as the tests find it (`VALLE_FIXTURES`, default ../shared/fixtures/tiny: see its
README.txt): its checkpoint is converted with the tiny random codec and Vocos, as `tests/conftest.py` does. For each
end-to-end greedy case (TTS with and without a silence prefix, STT), each precision runs the case greedily and is
compared with the float32 run (which must reproduce the fixture's codes):

* greedy agreement: the fraction of frames (all 8 codes) or phoneme ids equal to float32's, and whether the whole
  run is equal;
* max |logit difference| against float32 on the same inputs (teacher-forced on float32's output): the AR's logits
  at every generated step, and each NAR level's logits over the response frames.

Precisions: float32 AR with the NAR in bfloat16 autocast (`nar_dtype="bfloat16"`, what "auto" picks where bfloat16
is fast), bfloat16, float16, int8 (decoder weights int8 through transformers' `TorchAoConfig`, bfloat16
activations).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from valle_hf.errors import UsageError, one_line

from .common import NAR_LEVELS, Target, log, model_in, quiet
from .nar import as_generate

NAME, TITLE = "quality", "quality of each precision against float32 (parity fixtures, greedy)"
REFERENCE = "float32"
# label -> (model precision, nar_dtype)
VARIANTS = {"float32": ("float32", "float32"), "float32 + NAR bfloat16": ("float32", "bfloat16"),
            "bfloat16": ("bfloat16", "auto"), "float16": ("float16", "auto"), "int8": ("int8", "auto")}
DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "tiny"


def add_arguments(parser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--fixtures", default=os.environ.get("VALLE_FIXTURES", str(DEFAULT_FIXTURES)),
                       help="the parity fixture set (VALLE_FIXTURES)")


def check(args) -> None:
    """The parity fixture set is there: cases.json, a JSON object whose cases name their kind, beside
    cases.safetensors (`UsageError` naming --fixtures otherwise: another set, the Vocos one, failed mid-run)."""
    root = Path(args.fixtures)
    if not (root / "cases.json").is_file():
        raise UsageError(f"--fixtures {args.fixtures}: no fixture set there (no cases.json); give the parity fixture "
                         "set's folder, or set VALLE_FIXTURES")
    try:
        [case["kind"] for case in json.loads((root / "cases.json").read_text(encoding="utf-8"))["cases"]]
    except (OSError, ValueError, LookupError, TypeError) as error:  # no JSON, or another set's cases
        raise UsageError(f"--fixtures {args.fixtures}: its cases.json is no parity fixture set's "
                         f"({type(error).__name__}: {one_line(error, 120)}); give the parity fixture set's folder "
                         "(fixtures/tiny)") from None
    if not (root / "cases.safetensors").is_file():
        raise UsageError(f"--fixtures {args.fixtures}: no cases.safetensors beside its cases.json; give the parity "
                         "fixture set's folder")


def load_cases(root: Path) -> tuple[list[dict], dict]:
    """The fixture set's end-to-end greedy cases and its tensors."""
    from safetensors.torch import load_file

    meta = json.loads((root / "cases.json").read_text())
    cases = [case for case in meta["cases"] if case["kind"] in ("tts_e2e_greedy", "stt_e2e_greedy")]
    return cases, load_file(str(root / "cases.safetensors"))


def case_inputs(case: dict, tensors: dict, device: torch.device) -> dict:
    """A case's inputs and greedy settings as `generate` keyword arguments (every sampler off, as the case ran)."""
    tensor = {key: tensors[name].to(device) for key, name in case["tensors"].items()}
    settings = dict(temperature=0.0, repetition_penalty=1.0, top_k=0, top_p=1.0, min_p=0.0, stop_length_penalty=0.0,
                    dry_multiplier=0.0, mirostat_tau=0.0, return_dict_in_generate=True)
    if case["task"] == "stt":
        return dict(audio_codes=tensor["resp"][None], task="stt", max_new_tokens=case["kwargs"]["max_steps"],
                    **settings)
    ar = case["ar_kwargs"]
    return dict(input_ids=tensor["text"][None], prompt_codes=tensor["prom"][None], max_new_tokens=ar["max_steps"],
                prefix_silence=ar["prefix_silence"], input_prompt_prefix=False, input_prompt_length=0,
                max_levels=case["nar_kwargs"]["max_levels"], nar_temperature=0.0, output_audio=False, **settings)


def greedy(model, inputs: dict, nar_dtype: str):
    """A greedy run's output: phoneme ids (STT), or the codes `[T, 8]` and the AR's whole id sequence (TTS)."""
    with quiet():
        out = model.generate(**inputs, **({} if inputs.get("task") == "stt" else {"nar_dtype": nar_dtype}))
    if inputs.get("task") == "stt":
        return out.text_ids[0]
    return out.codes[0, : out.lengths[0]], out.sequences[0]


def tts_logits(model, inputs: dict, reference, nar_dtype: str) -> dict:
    """Teacher-forced logits on float32's output: the AR's at every generated step, each NAR level's over the
    frames."""
    from valle_hf.layout import tts_sequence

    codes, sequence = reference
    prompt, text = inputs["prompt_codes"], inputs["input_ids"][0]
    steps = len(sequence) - len(tts_sequence(model.config, text, 0, prompt.shape[1])) - round(
        inputs["prefix_silence"] * model.config.frame_rate)
    with as_generate(model, "float32"):  # the AR runs without the NAR's autocast
        ar = model(input_ids=sequence[None], prompt_codes=prompt, level=0, logits_to_keep=steps + 1).logits[0, :-1]
    nar = []
    with as_generate(model, nar_dtype):
        for level in range(1, NAR_LEVELS + 1):
            ids = tts_sequence(model.config, text, level, prompt.shape[1], response_frames=len(codes))[None]
            nar.append(model(input_ids=ids, prompt_codes=prompt, audio_codes=codes[None, :, :level], level=level,
                             logits_to_keep=len(codes)).logits[0].float())
    return {"ar": ar.float(), "nar": nar}


def agreement(rows: torch.Tensor, reference: torch.Tensor) -> dict:
    """Fraction of frames (or ids) equal to the reference's, over the longer run; whether the runs are equal."""
    length = min(len(rows), len(reference))
    same = (rows[:length] == reference[:length]).reshape(length, -1).all(dim=1).sum().item()
    equal = len(rows) == len(reference) and same == length
    return {"fraction": same / max(len(rows), len(reference), 1), "equal": equal}


def compare(model, nar_dtype: str, case: dict, inputs: dict, reference, reference_logits) -> dict:
    output = greedy(model, inputs, nar_dtype)
    if case["task"] == "stt":
        return agreement(output, reference)
    row = agreement(output[0], reference[0])
    logits = tts_logits(model, inputs, reference, nar_dtype)
    row["ar_max_diff"] = (logits["ar"] - reference_logits["ar"]).abs().max().item()
    row["nar_max_diff"] = max((a - b).abs().max().item() for a, b in zip(logits["nar"], reference_logits["nar"],
                                                                           strict=True))
    return row


def run(args, context) -> dict:
    from valle_hf.conversion import convert_checkpoint

    root = Path(args.fixtures)
    cases, tensors = load_cases(root)
    with quiet():
        base = convert_checkpoint(root / "fp32.sft", codec="tiny-random", vocoder="tiny-random")[0]
    base = base.eval().to(context.device)
    models = {REFERENCE: base}
    result = {"fixtures": str(root), "cases": {}}
    for case in cases:
        inputs = case_inputs(case, tensors, context.device)
        reference = greedy(base, inputs, "float32")
        expected = tensors[case["tensors"]["text_tokens" if case["task"] == "stt" else "codes"]].to(context.device)
        if case["task"] == "tts":
            expected = expected[case["prefix_silence_frames"]:]
        rows = {}
        reference_logits = None if case["task"] == "stt" else tts_logits(base, inputs, reference, "float32")
        for label, (precision, nar_dtype) in VARIANTS.items():
            if label == REFERENCE:
                continue
            if precision not in models:
                models[precision] = model_in(base, precision)
            rows[label] = compare(models[precision], nar_dtype, case, inputs, reference, reference_logits)
        reproduced = torch.equal(reference[0] if case["task"] == "tts" else reference, expected)
        result["cases"][case["name"]] = {"reproduces_fixture": reproduced, "precisions": rows}
        log(f"quality: {case['name']} done")
    return result


def report(result: dict) -> list[str]:
    lines = [f"  fixtures {result['fixtures']}; agreement with float32's greedy run (frames or ids equal, whole run "
             "equal), max |logit diff| vs float32 (AR, NAR)"]
    for name, case in result["cases"].items():
        lines.append(f"  {name} (float32 reproduces the fixture: {'yes' if case['reproduces_fixture'] else 'NO'}):")
        for label, row in case["precisions"].items():
            diffs = (f"; logits AR {row['ar_max_diff']:.2e}, NAR {row['nar_max_diff']:.2e}"
                     if "ar_max_diff" in row else "")
            whole = "equal" if row["equal"] else "differs"
            lines.append(f"    {label:24} {row['fraction']:7.1%} equal, whole run {whole}{diffs}")
    return lines


def targets(result: dict) -> list[Target]:
    reproduced = all(case["reproduces_fixture"] for case in result["cases"].values())
    return [Target(reproduced, "float32 reproduces every end-to-end greedy fixture (the reference the precisions "
                               "are compared with)")]


if __name__ == "__main__":
    import sys

    from .__main__ import main

    sys.exit(main(only=[NAME]))
