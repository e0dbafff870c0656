# ferrovent's everyday commands; CI runs the same steps (.ci/run).
.DEFAULT_GOAL := help

.PHONY: help build-dev lint test test-plain stdlib bench gevent-suite dist matrix

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

build-dev:  ## build the Rust extension and install ferrovent editable
	pip install -e ".[test,bench]"

lint:  ## rustfmt, clippy and ruff
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	ruff check python tests benches examples
	ruff format --check python tests benches examples

test:  ## Rust unit tests, then the Python suite, then the suite again with the CPython tricks off
	cargo test --quiet
	python -m pytest tests
	$(MAKE) test-plain

test-plain:  ## the Python suite with the arena cache and small frame stacks switched off
	FERROVENT_SMALL_STACKS=0 FERROVENT_ARENA_CACHE=0 python -m pytest tests

stdlib:  ## CPython's test modules after ferrovent's and gevent's patch_all: no ferrovent-only failure (~9 min)
	python -m pytest tests/stdlib -m stdlib

bench:  ## side-by-side benchmarks against stock gevent
	python benches/run.py

gevent-suite:  ## gevent's own tests on stock gevent and on ferrovent as gevent, compared (docs/gevent-suite.md)
	python -m tests.gevent_suite.runner -j2 --json target/gevent-suite.json

dist:  ## release sdist and manylinux wheels for every supported CPython into dist/, checked by auditwheel
	bash .ci/dist

matrix:  ## every supported CPython from its wheel in dist/: smoke test and the whole suite, outside the tree
	bash .ci/matrix
