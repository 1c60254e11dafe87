# Two commands do all the set-up on a fresh machine (Python 3.11):
#   make demo   -- the main job on the built-in synthetic dataset (no download)
#   make test   -- the test suite (CI runs exactly this)
PY := .venv/bin/python

.venv/.installed: setup.cfg pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	.venv/bin/pip install --quiet -e '.[test]'
	touch $@

.PHONY: test test-slow demo
test: .venv/.installed
	$(PY) -m pytest -q

test-slow: .venv/.installed
	$(PY) -m pytest -q -m slow

demo: .venv/.installed
	.venv/bin/alexnet demo
