# ringproxy: a plain GNU Makefile. `make` builds everything into build/; `make test` and
# `make demo` first install missing Debian build dependencies (tools/deps.sh).
# V=1 shows the commands. SAN=1 builds with ASan+UBSan into build/asan (used by `make asan`).
# WOLFSSL=fast links a static wolfSSL with its x86-64 assembly, built once from Debian's own
# source package by tools/wolfssl-fast.sh (about 2.5 minutes), into build/fast.

CC      ?= gcc
BUILD   ?= build
PREFIX  ?= /usr/local
SOVER   := 0
VERSION := 0.1.0

PKGS    := liburing libconfig libxxhash libdeflate libnghttp2
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -pthread
ifeq ($(SAN),1)
BUILD   := build/asan
CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
           -std=c11 -D_GNU_SOURCE $(WARN) -pthread
LDFLAGS += -fsanitize=address,undefined
endif
.DEFAULT_GOAL := all
WOLFSSL ?= debian
ifeq ($(WOLFSSL),fast)
BUILD       := $(BUILD)/fast
WOLFSSL_DIR := build/wolfssl-fast
WOLFSSL_DEP := $(WOLFSSL_DIR)/.stamp
WOLFSSL_PC  := PKG_CONFIG_LIBDIR=$(abspath $(WOLFSSL_DIR))/prefix/lib/pkgconfig pkg-config
# recursive: expanded when a recipe runs, after $(WOLFSSL_DEP) has built the prefix
WOLFSSL_CFLAGS = $(shell $(WOLFSSL_PC) --cflags wolfssl)
WOLFSSL_LIBS   = $(shell $(WOLFSSL_PC) --static --libs wolfssl)
$(WOLFSSL_DEP):
	$(Q)tools/wolfssl-fast.sh build
else
WOLFSSL_DEP    :=
WOLFSSL_CFLAGS := $(shell pkg-config --cflags wolfssl 2>/dev/null)
WOLFSSL_LIBS   := $(shell pkg-config --libs wolfssl 2>/dev/null)
endif
BASE_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
BASE_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
PKG_CFLAGS = $(BASE_CFLAGS) $(WOLFSSL_CFLAGS)
PKG_LIBS   = $(BASE_LIBS) $(WOLFSSL_LIBS)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRC := engine/server.c engine/worker.c engine/buf.c engine/session_h1.c engine/session_h2.c engine/h2common.c engine/exchange.c engine/upstream.c engine/upstream_h2.c engine/tunnel.c engine/route.c \
           engine/respond.c engine/local.c engine/upstream_head.c engine/metrics.c engine/admin.c engine/snapshot.c \
           engine/h1.c engine/timer.c engine/log.c engine/hooks.c engine/pcache.c engine/refresh.c balance/balance.c balance/health.c tls/tls.c \
           cache/policy.c cache/store.c cache/compress.c engine/util.c engine/bufring.c engine/proxy_proto.c \
           engine/accesslog.c engine/logfmt.c
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
DAEMON_OBJ := $(BUILD)/obj/engine/main.o $(BUILD)/obj/engine/config.o $(BUILD)/obj/engine/pidfile.o \
              $(BUILD)/obj/engine/upgrade.o $(BUILD)/obj/engine/upgrade_msg.o
UNIT_TESTS := test_h1 test_config test_route test_timer test_pool test_balance test_hist test_hooks test_cache \
              test_ringload test_tls test_worker test_tunnel test_util test_upstream test_proxy_proto \
              test_exchange test_snapshot test_upgrade test_accesslog test_session_h2
FUZZERS := fuzz_h1_request fuzz_h1_response fuzz_h1_chunked fuzz_config fuzz_tls_server \
           fuzz_cache_policy fuzz_proxy_proto fuzz_upgrade fuzz_logfmt fuzz_h2_session

BINS := $(BUILD)/ringproxy $(BUILD)/ringorigin $(BUILD)/ringload $(BUILD)/libringproxy.a \
        $(BUILD)/libringproxy.so $(BUILD)/ringfront
RINGLOAD_OBJ := $(BUILD)/obj/tools/ringload.o $(BUILD)/obj/tools/hist.o $(BUILD)/obj/tools/ws.o \
                $(BUILD)/obj/engine/h1.o $(BUILD)/obj/tls/tls.o $(BUILD)/obj/engine/util.o \
                $(BUILD)/obj/engine/bufring.o

.PHONY: all deps test unit integration asan demo fuzz fuzz-deps fuzz-run install format format-check clean bench
all: $(BINS)

deps:
	$(Q)tools/deps.sh

$(BUILD)/obj/%.o: %.c | $(WOLFSSL_DEP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC $<")
	$(Q)$(CC) $(CFLAGS) -fPIC -fvisibility=hidden -DRP_BUILDING_LIBRARY $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libringproxy.a: $(LIB_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

# -fvisibility=hidden keeps internal functions out; the version script also drops what the
# toolchain adds (ASan builds export linker symbols such as _end otherwise)
$(BUILD)/libringproxy.so: $(LIB_OBJ) engine/libringproxy.map
	$(Q)$(CC) -shared -Wl,-soname,libringproxy.so.$(SOVER) -Wl,--version-script=engine/libringproxy.map $(LDFLAGS) -pthread $(LIB_OBJ) $(PKG_LIBS) -o $@.$(VERSION)
	$(Q)ln -sf libringproxy.so.$(VERSION) $@.$(SOVER) && ln -sf libringproxy.so.$(VERSION) $@

$(BUILD)/ringproxy: $(DAEMON_OBJ) $(BUILD)/libringproxy.a
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -pthread $(DAEMON_OBJ) $(BUILD)/libringproxy.a $(PKG_LIBS) -o $@

# the example front end: built like a user's program, against the archive
$(BUILD)/obj/tools/ringfront.o: CFLAGS += -Iengine
$(BUILD)/ringfront: $(BUILD)/obj/tools/ringfront.o $(BUILD)/libconfigfile.a $(BUILD)/libringproxy.a
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -pthread $^ $(PKG_LIBS) -o $@

$(BUILD)/ringload: $(RINGLOAD_OBJ)
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -pthread $^ $(PKG_LIBS) -lm -o $@

$(BUILD)/ringorigin: $(BUILD)/obj/tools/ringorigin.o $(BUILD)/obj/tools/ws.o $(BUILD)/obj/engine/util.o \
                     $(BUILD)/obj/engine/bufring.o
	@$(if $(Q),echo "  LD $@")
	$(Q)$(CC) $(LDFLAGS) -pthread $^ $(PKG_LIBS) -o $@

# the config loader is the daemon's, not the library's: an archive of its own, so a test
# links it only when it needs it (tests may #include the .c under test instead)
$(BUILD)/libconfigfile.a: $(BUILD)/obj/engine/config.o
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libtools.a: $(BUILD)/obj/tools/hist.o $(BUILD)/obj/tools/ws.o
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/test_%: tests/unit/test_%.c $(BUILD)/libringproxy.a $(BUILD)/libconfigfile.a $(BUILD)/libtools.a
	@$(if $(Q),echo "  CC $@")
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -Iengine -Itools -Itls -Icache $< $(BUILD)/libconfigfile.a $(BUILD)/libtools.a \
		$(BUILD)/libringproxy.a $(LDFLAGS) $(PKG_LIBS) $(CMOCKA_LIBS) -lm -o $@

# a test that #includes the daemon's .c files under test is rebuilt when they change
$(BUILD)/test_upgrade: engine/upgrade.c engine/upgrade_msg.c engine/upgrade.h
# the HTTP/2 session's test and fuzz target share their stubs
$(BUILD)/test_session_h2: tests/unit/h2_stubs.h

unit: $(UNIT_TESTS:%=$(BUILD)/%)
	$(Q)for t in $(UNIT_TESTS); do echo "== $$t"; $(BUILD)/$$t || exit 1; done

integration: all
	$(Q)python3 tests/integration/run.py --build $(BUILD)

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory integration

asan: deps
	$(Q)$(MAKE) --no-print-directory SAN=1 all unit integration

$(BUILD)/bench_balance: tests/unit/bench_balance.c $(BUILD)/libringproxy.a
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -Iengine $< $(BUILD)/libringproxy.a $(LDFLAGS) $(PKG_LIBS) -o $@

$(BUILD)/bench_cache: tests/unit/bench_cache.c $(BUILD)/libringproxy.a
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -Icache $< $(BUILD)/libringproxy.a $(LDFLAGS) $(PKG_LIBS) -lm -o $@

bench: deps
	$(Q)$(MAKE) --no-print-directory all $(BUILD)/bench_balance $(BUILD)/bench_cache
	$(Q)$(BUILD)/bench_balance
	$(Q)$(BUILD)/bench_cache
	$(Q)python3 tools/bench.py --build $(BUILD)

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tools/demo.sh $(BUILD)

# `make fuzz`: every target for FUZZ_TIME seconds, one after another (tools/fuzz-campaign.sh).
# Seeds come from tests/fuzz/corpus/<target>/ (read, never written); new units, crash inputs
# and logs go under $(BUILD)/fuzz/. FUZZ_FLAGS adds libFuzzer options. Exits 1 on a crash.
FUZZ_TIME  ?= 30
FUZZ_FLAGS ?=
FUZZ_DEPS  := $(LIB_SRC) engine/config.c $(wildcard engine/*.h tls/*.h cache/*.h)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ $@")
	$(Q)clang-14 -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iengine -Itls -Icache $(PKG_CFLAGS) \
		$< engine/h1.c engine/config.c engine/util.c engine/proxy_proto.c engine/upgrade_msg.c engine/logfmt.c engine/h2common.c tls/tls.c cache/policy.c cache/store.c cache/compress.c \
		$(PKG_LIBS) -o $@
$(BUILD)/fuzz/fuzz_h2_session: tests/unit/h2_stubs.h
fuzz-deps:
	$(Q)tools/deps.sh fuzz
fuzz: fuzz-deps
	$(Q)$(MAKE) --no-print-directory fuzz-run
fuzz-run: $(FUZZERS:%=$(BUILD)/fuzz/%)
	$(Q)FUZZ_FLAGS='$(FUZZ_FLAGS)' tools/fuzz-campaign.sh $(BUILD)/fuzz $(FUZZ_TIME) $(FUZZERS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BUILD)/ringproxy $(BUILD)/ringload $(BUILD)/ringorigin $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD)/libringproxy.a engine/ringproxy.h -t $(DESTDIR)$(PREFIX)/lib/
	mv $(DESTDIR)$(PREFIX)/lib/ringproxy.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(BUILD)/libringproxy.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libringproxy.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libringproxy.so.$(SOVER)
	ln -sf libringproxy.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libringproxy.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' tools/ringproxy.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/ringproxy.pc
	install -d $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 644 man/ringproxy.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 man/ringproxy.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	sed -e 's|/usr/local/bin/ringproxy|$(PREFIX)/bin/ringproxy|g' tools/ringproxy.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/ringproxy.service

FORMAT_SRC = $(filter-out engine/uring_compat.h,$(wildcard engine/*.[ch] balance/*.[ch] cache/*.[ch] tls/*.[ch] \
                                             tools/*.[ch] tests/unit/*.c tests/fuzz/*.c))
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
