# evofs: see README.md. `make test` and `make demo` do all set-up on a fresh
# machine; nothing is installed outside this repository.

GO        ?= go
AZURITE   := contrib/azurite/node_modules/.bin/azurite-blob
WITH_AZ   := contrib/azurite/run
TESTFLAGS ?= -count=1 -timeout=30m
BIN       := bin

.PHONY: all build install test vet deps bench demo clean

all: build

VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS   := -X main.version=$(VERSION)
PREFIX    ?= /usr/local

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# evofs on PATH and mount(8)'s helper for fuse.evofs in /etc/fstab.
install: build
	install -D -m 0755 $(BIN)/evofs $(DESTDIR)$(PREFIX)/bin/evofs
	install -d $(DESTDIR)/sbin
	ln -sf $(PREFIX)/bin/evofs $(DESTDIR)/sbin/mount.fuse.evofs

$(AZURITE): contrib/azurite/package.json contrib/azurite/package-lock.json
	npm ci --prefix contrib/azurite --no-audit --no-fund
	touch $@

# gdalinfo/ogrinfo/ogr2ogr and sqlite3 for the GIS mount tests, from Debian when missing.
GDAL   := $(shell command -v ogr2ogr 2>/dev/null)
SQLITE := $(shell command -v sqlite3 2>/dev/null)

# PyQGIS (QGIS 3.22 from Debian, no GUI needed) for the tests that edit layers
# in the mount as a QGIS user does.
PYQGIS := $(shell /usr/bin/python3 -c 'import qgis.core' 2>/dev/null && echo yes)

deps: $(AZURITE)
	$(GO) mod download
ifneq ($(PYQGIS),yes)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-qgis qgis-providers
endif
ifeq ($(GDAL)$(SQLITE),)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gdal-bin sqlite3
else ifeq ($(GDAL),)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gdal-bin
else ifeq ($(SQLITE),)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3
endif

vet:
	$(GO) vet ./...

# Runs every test against a fresh Azurite on a free port, every package
# under the race detector.
test: deps vet
	$(WITH_AZ) $(GO) test $(TESTFLAGS) -race ./...

# Read throughput against a direct azblob download, CPU and peak RSS; then
# the writes (cp against a direct upload, small files, RSS, gdal_translate
# from gdal-bin, which deps installs), each half with an Azurite of its own
# (in-memory Azurite keeps every blob). Both network profiles, the same
# flags: local (blob proxy unshaped), then shaped (1 Gbit/s shared, 20 ms a
# blob request); see docs/benchmarks.md.
BENCH_PROFILES ?= local shaped

bench: deps build
	set -e; for p in $(BENCH_PROFILES); do \
		$(WITH_AZ) $(BIN)/evofs-bench --evofs $(BIN)/evofs --profile $$p --writes=false; \
		$(WITH_AZ) $(BIN)/evofs-bench --evofs $(BIN)/evofs --profile $$p --reads=false; \
	done

# Mounts a seeded, emulated workspace at ./mnt until Ctrl-C.
demo: deps build
	contrib/demo

clean:
	rm -rf $(BIN) contrib/azurite/node_modules
