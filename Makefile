# The two commands of the README. Both set up the environment first (tools/setup_env.sh is
# idempotent and quick once done).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean
setup:
	bash tools/setup_env.sh

demo: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" bash recipes/mini/run.sh

test: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q

clean:
	rm -rf recipes/mini/exp
