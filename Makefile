# The two commands a newcomer needs: `make run` (the whole system locally) and `make test`.
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# tests/test_scanners.py (run by `make lint`) finds checkov here.
SCANNERS_VENV := .venv-scanners
SCANNERS_INSTALLED := $(SCANNERS_VENV)/.installed
# pytest-xdist processes for `make test` (tests/conftest.py: each has its own servers).
TEST_WORKERS ?= 4

.PHONY: venv system-packages scanners services run test lint prometheusrule fuzz bench bench-ingest bench-indexes bench-produce bench-api bench-keyset bench-load bench-scaleout bench-storage bench-redrive capacity clean

# uv installs the requirements (resolved as pip resolves them) several times faster than pip; it is
# the one package pip installs. Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set,
# nothing else would write it, and every process of the suite would compile what it imports.
UV := $(VENV)/bin/uv
UV_REQUIREMENT := uv>=0.5,<1

$(INSTALLED): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(UV_REQUIREMENT)"
	$(UV) pip install --quiet --python $(PY) --compile-bytecode -r requirements-dev.txt
	touch $@

venv: $(INSTALLED)

$(SCANNERS_INSTALLED): requirements-scanners.txt
	test -x $(SCANNERS_VENV)/bin/python || $(PYTHON_BOOTSTRAP) -m venv $(SCANNERS_VENV)
	$(SCANNERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "$(UV_REQUIREMENT)"
	$(SCANNERS_VENV)/bin/uv pip install --quiet --python $(SCANNERS_VENV)/bin/python --compile-bytecode \
		-r requirements-scanners.txt
	touch $@

scanners: $(SCANNERS_INSTALLED)  ## checkov, in a virtual environment of its own

system-packages:  ## Java, Maven, Chromium and the rest of what the suite needs, where missing
	bash stack/install-system-packages.sh

services: venv  ## local broker (LOCAL_BROKER: tansu or kafka) on :9092 and MongoDB-protocol database on :27017
	$(PY) -m stack.services

run: venv  ## services + consumer + producer (rate 5) + API on :8000; Ctrl-C stops everything
	$(PY) -m stack.run

test: system-packages venv  ## every test but the scanners' (make lint); tests/conftest.py says which run on which broker
	$(PY) -m pytest -m "not lint" -n $(TEST_WORKERS) --dist loadgroup

lint: venv scanners  ## ruff over the repository (ruff.toml), then checkov and hadolint over the deployment files
	$(PY) -m ruff check .
	$(PY) -m pytest -m lint

prometheusrule:  ## deploy/k8s/monitoring/prometheusrule.yaml from the alert rules in deploy/prometheus/alerts.yml
	$(PYTHON_BOOTSTRAP) deploy/prometheus/prometheusrule.py

FUZZ_SECONDS ?= 60
fuzz: venv  ## coverage-guided fuzzing of the event decoder (atheris) for FUZZ_SECONDS; crashes in artifacts/fuzz/
	mkdir -p artifacts/fuzz/corpus
	PYTHONPATH=. $(PY) fuzz/fuzz_event.py -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=artifacts/fuzz/ \
		artifacts/fuzz/corpus fuzz/corpus

bench: bench-ingest bench-produce bench-api bench-storage

bench-ingest: venv  ## also where the CPU per event goes (bench/ingest_profile.py), and 1, 2 and 3 consumers in one group on 6 partitions (bench/scaleout.py)
	$(PY) -m bench.ingest
	$(PY) -m bench.ingest_profile
	$(PY) -m bench.scaleout

bench-scaleout: venv
	$(PY) -m bench.scaleout

bench-storage: venv  ## what each index costs an insert, bytes per stored log
	$(PY) -m bench.storage

capacity:  ## partitions, consumers and shards for 1k/10k/100k events/s, from the bench-scaleout and bench-storage figures
	$(PY) -m bench.capacity

bench-redrive: venv  ## redrive_dead_letters against a bare consumer and producer copying the same records
	$(PY) -m bench.redrive

bench-indexes: venv
	$(PY) -m bench.indexes

bench-produce: venv
	$(PY) -m bench.produce

bench-api: venv
	$(PY) -m bench.api

bench-keyset: venv  ## a deep keyset page against the first, numbered page=150 beside them; 24 clients walking by keyset
	$(PY) -m bench.keyset

bench-load: system-packages venv  ## the serving candidates side by side under wrk, a flood and an outage (Debian's wrk and nginx, installed by system-packages), beside the raw driver
	$(PY) -m bench.load

clean:
	rm -rf $(VENV) $(SCANNERS_VENV) .data .pytest_cache artifacts
