# Two entry points a newcomer needs:
#   make demo   run the whole stack on this machine and show results live (CAMERA=/dev/video0 or rtsp://...)
#   make test   run the whole test suite
# Both install what is missing first (system packages, .venv, pinned Python packages).

CAMERA ?=
ARGS ?=

.PHONY: demo test setup bench lint docs

setup:
	@bash scripts/bootstrap.sh

demo: setup
	.venv/bin/python -m services.demo $(if $(CAMERA),--camera $(CAMERA)) $(ARGS)

test: setup
	bash scripts/test.sh $(ARGS)

bench: setup
	.venv/bin/python -m bench $(ARGS)

docs: setup
	.venv/bin/python -m services.cli schema
