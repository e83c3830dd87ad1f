# Two commands do everything (see README): `make demo` and `make test`.
# Both run scripts/setup.sh first, which creates/updates the environment only when needed.
.PHONY: demo test screenshot setup

PYTEST_ARGS ?= -q

setup:
	@./scripts/setup.sh >/dev/null

# Opens napari with a sample and the annotator; without a display it renders out/demo.png.
demo:
	@PY=$$(./scripts/setup.sh | tail -n 1) && BIN=$$(dirname "$$PY") && \
	if [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ] || [ "$$(uname)" = Darwin ]; then \
		"$$BIN/alseg" demo; \
	else \
		echo "no display found: rendering the demo headless to out/demo.png"; \
		xvfb-run -a -s "-screen 0 1600x1000x24" "$$BIN/alseg" demo --screenshot out/demo.png; \
	fi

# The import contracts (import-linter), the type check (mypy: every function typed, Qt's Optional getters aside; both
# configured in pyproject.toml), then the whole test suite, headless: pytest-xvfb starts a virtual X display.
test:
	@PY=$$(./scripts/setup.sh | tail -n 1) && BIN=$$(dirname "$$PY") && "$$BIN/lint-imports" --no-cache && \
	"$$BIN/mypy" && env -u QT_QPA_PLATFORM "$$PY" -m pytest $(PYTEST_ARGS)

# Screenshots of napari with a sample project after a scripted round: SAMPLE=brain-stack|tumour-cases, OUT=path.png
SAMPLE ?= tumour-cases
OUT ?= out/demo-$(SAMPLE).png
screenshot:
	@PY=$$(./scripts/setup.sh | tail -n 1) && \
	env -u QT_QPA_PLATFORM xvfb-run -a -s "-screen 0 1600x1000x24" "$$(dirname "$$PY")/alseg" demo --sample $(SAMPLE) --screenshot $(OUT)
