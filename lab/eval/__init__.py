"""Evaluate a checkpoint on held-out procedural episodes, through the serving engine.

    python -m lab.eval --suite all --episodes 32 --seed 1 --json bench/results/eval.json
    (`microturn eval`; `make eval` reproduces the committed report)

Every episode runs through `inference.engine.Engine` (open / step / close: the code that serves
calls), several sessions batched per step like concurrent calls. A simulated background model
answers a delegation: the episode's result text joins the input `delay` micro-turns after the
model delegated (never before, so an undelegated request gets no answer).

Metrics, named as in the lab's benchmarks (definitions in docs/model.md):
    timespeak   macro-accuracy of timing within +-1 micro-turn (per-episode hits / max(expected,
                said), averaged per subtype every / once / countdown, then over subtypes)
    cuespeak    the same accuracy over cue responses (one subtype)
    repcount    off-by-one accuracy and mean absolute error of the final count (the answer to
                "how many?", else the last number said), plus count timing accuracy
    turn        turn-taking latency (median, p90) from the end of the user's turn to the model's
                first audio, false-interruption rate (the model starts during the user's turn or a
                mid-sentence pause), barge-in stop latency and success (stopped within 400 ms)
    delegate    success: delegated once at the end of the request (+-1 .. +2), said the holding
                phrase, and said the result's value when it arrived (within 3 micro-turns)
    chat, idle  reply accuracy; false speech / false delegation rates
    *_spoken    timespeak and chat with the instruction said aloud instead of typed, same metrics
    stoi        STOI of the model's phrases against the reference rendering in its fixed voice

The VAD baseline (`--baseline`, lab/baseline.py) runs on the same turn episodes.

Modules: runner.py (episodes through the engine), metrics/ (timing, requests, turns, speech),
suites.py (the suites and evaluate()), report.py (markdown tables), cli.py (the command).
"""
