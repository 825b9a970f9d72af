"""valle-hf benchmarks: generation at the released model's size (random weights: nothing is downloaded).

One module per measured thing, each with `run(args, context) -> dict`, `report(result) -> list[str]` and, where it
checks targets, `targets(result) -> list[Target]`:

* `floors`: the weight-read floor of one cached AR step per kernel family (float32 oneDNN plain / prepacked /
  `F.linear`, bfloat16, int8 weight-only) and matrix-product throughput at the NAR's shapes per precision;
* `ar_steps`: ms per cached AR step through `model.generate` per precision at batch 1 and 8, against its floor;
  the no-cache baseline; optionally the cache-kind matrix (dynamic, static, compiled);
* `nar`: the 7 NAR levels over 10 s of speech per `nar_dtype`, against their compute floor; a profile of one pass;
  the share of a pass the text segment takes;
* `end_to_end`: one real `generate` call (10 s of speech) in a fresh process: stage times, RTF and its floor, peak
  memory; batch 8 against batch 1;
* `streaming`: time to first audio and the streamed RTF with the released-size Vocos;
* `host_work`: per-step host work outside the backbone (step inputs, sampler processors);
* `quality`: each precision against float32 on the parity fixtures (greedy agreement, logit differences).

`common` holds what they share (machine info, other processes' load, timing and memory helpers, the model builder,
inputs). Run everything, or some modules, or one module alone::

    python -m benchmarks --quick                 # smoke run: every module, short runs
    python -m benchmarks --json results.json     # the full run (a quiet machine)
    python -m benchmarks --only floors,ar --threads 8
    python -m benchmarks.nar --seconds 10        # one module alone (same options)

The report starts with the machine, then each module's section, then the targets (MET / MISSED), every ratio
measured within the one run. `benchmarks/README.md` describes each measurement and holds the numbers.
"""
