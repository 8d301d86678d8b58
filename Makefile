# ssm toolkit - build, test, install.
#
#   make                 build every tool into bin/ (installs missing Debian packages first)
#   make test            C unit tests + bats tool tests, then the same under ASan+UBSan
#   make demo            the main job: a gallery of kernels from a pipeline of the tools
#   make bench           benchmarks (ratios against baselines measured in the same run)
#   make fuzz            libFuzzer on the stream reader for FUZZ_SECONDS (default 60)
#   make install PREFIX=/usr/local
#   NO_CUDA=1            skip the CUDA build even when nvcc is present
#
# Layout: cmd/ssm-*.c (one per tool) link build/libssm.a (libcommon/*.c + kernels/*.c).  New
# files are picked up by wildcard: a new tool, kernel or test needs no Makefile change.

PREFIX  ?= /usr/local
CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
BUILD   ?= build
BIN     ?= bin
WARN     = -Wall -Wextra
CPPFLAGS += -Ilibcommon -Ikernels -D_GNU_SOURCE
ALL_CFLAGS = -std=gnu11 $(CFLAGS) $(WARN) -fopenmp $(EXTRA_CFLAGS)
LDLIBS  += -lfftw3 -lfftw3f -lfftw3_omp -lfftw3f_omp -lopenblas -lz -lm -lpthread
ALL_LDFLAGS = -fopenmp $(LDFLAGS) $(EXTRA_LDFLAGS)
# cairo and fontconfig (ssm-viz draws PNG/SVG with them); every tool links the same LDLIBS.
CPPFLAGS += $(shell pkg-config --cflags cairo fontconfig 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs cairo fontconfig 2>/dev/null || echo -lcairo -lfontconfig)

LIB_SRC   := $(sort $(wildcard libcommon/*.c kernels/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_SRC  := $(sort $(wildcard cmd/ssm-*.c))
TOOLS     := $(TOOL_SRC:cmd/%.c=$(BIN)/%)
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
BENCH_BINS := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
HEADERS   := $(wildcard libcommon/*.h kernels/*.h)

# ---- optional CUDA build ------------------------------------------------------------------
NVCC ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
CU_SRC := $(sort $(wildcard kernels/*.cu))
ifeq ($(NO_CUDA),)
ifneq ($(NVCC),)
ifneq ($(CU_SRC),)
CUDA := 1
endif
endif
endif
ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
NVFLAGS  ?= -O3 -lineinfo -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90
CPPFLAGS += -DSSM_HAVE_CUDA
LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcufft -lcublas -lcudart -lstdc++
endif

.SECONDARY:
.PHONY: all deps test unit bats check-sanitize demo bench fuzz install clean
all: deps-build $(TOOLS)

# Dependencies are checked once per build directory (scripts/deps.txt lists them).
DEPS_STAMP = $(BUILD)/.deps-build
deps-build: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.txt scripts/install-deps.sh
	@sh scripts/install-deps.sh build
	@mkdir -p $(BUILD) && touch $@
# after the build group, never beside it: two apt-gets at once fail on dpkg's lock under make -j
$(BUILD)/.deps-test: scripts/deps.txt scripts/install-deps.sh $(DEPS_STAMP)
	@sh scripts/install-deps.sh test
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/%.o: %.c $(HEADERS) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/%.cu.o: %.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -Ilibcommon -Ikernels -DSSM_HAVE_CUDA -c $< -o $@

$(BUILD)/libssm.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/%: $(BUILD)/cmd/%.o $(BUILD)/libssm.a
	@mkdir -p $(BIN)
	$(CC) $(ALL_LDFLAGS) $< $(BUILD)/libssm.a $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c tests/unit/check.h $(BUILD)/libssm.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(ALL_CFLAGS) $(ALL_LDFLAGS) $< $(BUILD)/libssm.a $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(BUILD)/libssm.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(ALL_LDFLAGS) $< $(BUILD)/libssm.a $(LDLIBS) -o $@

# ---- tests --------------------------------------------------------------------------------
# `make test` = the suite with the normal build, then again under ASan+UBSan (build-san/).
test: $(BUILD)/.deps-test all $(UNIT_BINS)
	@sh tests/run.sh $(BIN) $(BUILD)
	@$(MAKE) --no-print-directory check-sanitize

SAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
check-sanitize: $(BUILD)/.deps-test
	@$(MAKE) --no-print-directory BUILD=build-san BIN=build-san/bin NO_CUDA=1 OPT=-O1 \
	    EXTRA_CFLAGS="$(SAN_FLAGS)" EXTRA_LDFLAGS="$(SAN_FLAGS)" all sanitize-unit-bins
	@echo "== the same suite under ASan+UBSan =="
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	    UBSAN_OPTIONS=print_stacktrace=1 SSM_SANITIZE=1 \
	    sh tests/run.sh build-san/bin build-san
sanitize-unit-bins: $(UNIT_BINS)

# ---- demo, bench, fuzz ----------------------------------------------------------------------
demo: all
	@sh examples/demo.sh $(BIN)

bench: $(BUILD)/.deps-test all $(BENCH_BINS)
	@sh bench/run.sh $(BIN) $(BUILD)

FUZZ_SECONDS ?= 60
fuzz: $(BUILD)/.deps-test
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

# ---- install ------------------------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	for s in 1 5 7; do for m in man/*.$$s; do \
	    if [ -e "$$m" ]; then install -m 644 "$$m" $(DESTDIR)$(PREFIX)/share/man/man$$s/ || exit 1; fi; \
	done; done

clean:
	rm -rf $(BUILD) build-san $(BIN)
