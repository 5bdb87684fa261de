# Microturn: the two commands are `make run` and `make test`; the rest is extra.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel on these machines; GPU users may set TORCH_SPEC='torch>=2.4' for their CUDA build.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: run test install install-test install-lab system-deps lint format bench bench-inference bench-agent bench-media clean help bench-load bench-capacity bench-remote train eval validate eval-live

help:
	@echo "make run       install into .venv and start the server on http://127.0.0.1:8080"
	@echo "make test      install test needs (Python and Debian packages) and run every test"
	@echo "make lint      ruff + mypy"
	@echo "make bench     every benchmark (tables on stdout, JSON under bench/results/)"
	@echo "make bench-capacity  media CPU per call and calls held (GStreamer callers); bench-remote: remote step overhead"
	@echo "make train     train the reference model in resumable stages (runs/small), export it"
	@echo "make eval      evaluate the shipped model + VAD baseline (bench/results/eval.json)"
	@echo "make eval-live the model through Chromium + WebRTC, live beside offline (bench/results/eval-live.md)"
	@echo "make validate  the scored suites on more held-out seeds, against the targets (~15 min)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"' \
		|| { echo "Microturn needs Python 3.11 or newer (found $(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and explicitly, so the project's `torch>=2.4` is already satisfied by it.
$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# The lab (training, evaluation): its own extra; the tests install it too.
$(VENV)/.installed-lab: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[lab]'
	@touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

install-lab: $(VENV)/.installed-lab

system-deps:
	@bash infra/install-system-deps.sh

run: install
	$(BIN)/microturn serve

test: install-test system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: bench-inference bench-agent bench-media bench-load

bench-inference: install
	$(BIN)/python -m bench.inference

bench-agent: install
	$(BIN)/python -m bench.agent

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts *.egg-info

bench-media: install-test system-deps
	$(BIN)/python -m bench.media

bench-load: install-test system-deps
	$(BIN)/python -m bench.load

# Media CPU per call and calls held, with GStreamer webrtcbin callers (issue 27's measures)
bench-capacity: install-test system-deps
	$(BIN)/python -m bench.capacity cost
	$(BIN)/python -m bench.capacity hold --minutes 5

# A remote inference worker's step overhead against the engine in process
bench-remote: install
	$(BIN)/python -m bench.remote

# The reference model: staged, resumable training (see docs/model.md). Each stage stops after
# TRAIN_MINUTES and resumes where it stopped when run again; batches are a function of (seed, step).
TRAIN_RUN ?= runs/small
TRAIN_MINUTES ?= 120
# One stage: $(call train_stage,NAME,STEPS,EXPORT_DIR)
train_stage = nice -n 15 $(BIN)/python -m lab.train --stage $(1) --steps $(2) --resume \
	--run $(TRAIN_RUN) --minutes $(TRAIN_MINUTES) --export $(3)
train: install-lab system-deps
	$(call train_stage,text,4600,$(TRAIN_RUN)/export-text)
	$(call train_stage,chain,3200,$(TRAIN_RUN)/export-chain)
	$(call train_stage,listen,3000,$(TRAIN_RUN)/export-listen)
	$(call train_stage,react,3200,$(TRAIN_RUN)/export-react)
	$(call train_stage,speak,3000,$(TRAIN_RUN)/export-speak)
	$(call train_stage,prosody,2600,$(TRAIN_RUN)/export-prosody)
	$(call train_stage,recount,500,$(TRAIN_RUN)/export-recount)
	$(call train_stage,timing,2100,$(TRAIN_RUN)/export-timing)
	$(call train_stage,cues,3300,$(TRAIN_RUN)/export-cues)
	$(call train_stage,start,1200,$(TRAIN_RUN)/export-start)
	$(call train_stage,near,1500,$(TRAIN_RUN)/export-near)
	$(call train_stage,settle,1300,$(TRAIN_RUN)/export-settle)
	$(call train_stage,late,800,$(TRAIN_RUN)/export-late)
	nice -n 10 $(BIN)/python -m lab.tasks.speakers
	$(call train_stage,open,1100,$(TRAIN_RUN)/export-open)
	$(call train_stage,together,1700,$(TRAIN_RUN)/export-together)
	$(call train_stage,polish,1200,$(TRAIN_RUN)/export-polish)
	$(call train_stage,after,400,$(TRAIN_RUN)/export-after)
	$(call train_stage,remind,350,$(TRAIN_RUN)/export-remind)
	$(call train_stage,copy,700,$(TRAIN_RUN)/export-copy)
	$(call train_stage,match,900,$(TRAIN_RUN)/export-match)
	$(call train_stage,hear,500,$(TRAIN_RUN)/export-hear)
	$(call train_stage,voice,1500,$(TRAIN_RUN)/export-voice)
	$(call train_stage,phase,2600,$(TRAIN_RUN)/export-phase)
	$(call train_stage,ahead,1800,$(TRAIN_RUN)/export-ahead)
	$(call train_stage,steady,1000,$(TRAIN_RUN)/export-steady)
	$(call train_stage,tally,600,$(TRAIN_RUN)/export-tally)
	$(call train_stage,awaited,600,$(TRAIN_RUN)/export-awaited)
	$(call train_stage,keyed,0,inference/checkpoints/small)

# Held-out episodes through the serving engine; the committed report is bench/results/eval.json.
EVAL_ARGS ?= --suite all --episodes 32 --seed 1 --baseline
eval: install-lab system-deps
	$(BIN)/python -m lab.eval $(EVAL_ARGS) --json bench/results/eval.json

# The model through Chromium, WebRTC and the codec (lab/live): real calls, scored from the audio
# the page received, beside the same episodes offline. bench/results/eval-live.{json,md}.
EVAL_LIVE_ARGS ?= --episodes 8 --seed 10
eval-live: install-lab install-test system-deps
	$(BIN)/python -m lab.live $(EVAL_LIVE_ARGS)

# More held-out seeds, 128 episodes each, two seeds at a time (one torch thread each):
# bench/results/validate-sN.json and their numbers side by side against the issue's targets.
VALIDATE_SEEDS ?= 2 3 4 5
VALIDATE_ARGS ?= --suite timespeak,cuespeak,repcount,turn --episodes 128
validate: install-lab system-deps
	$(MAKE) -j2 $(foreach s,$(VALIDATE_SEEDS),bench/results/validate-s$(s).json)
	$(BIN)/python -m lab.eval --table $(foreach s,$(VALIDATE_SEEDS),bench/results/validate-s$(s).json)

bench/results/validate-s%.json: FORCE
	$(BIN)/python -m lab.eval $(VALIDATE_ARGS) --seed $* --json $@

.PHONY: FORCE
FORCE:
