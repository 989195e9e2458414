# spooky — see README.md. `make help` lists the targets.
GO        ?= go
CLANG     ?= clang-19
BIN       := bin
PKGS      := ./...
# Integration tests build and tear down network namespaces; they need root and
# skip with a message without it. -p 1 keeps two packages' labs from sharing
# the machine's two cores during timing-sensitive QUIC handshakes.
TESTFLAGS ?= -count=1 -p 1 -timeout 20m

.PHONY: all build generate check-generate test test-unit bench lint demo image clean help

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

build: ## build spooky, spooky-backend and spooky-client into bin/
	$(GO) build -o $(BIN)/ ./cmd/...

generate: ## regenerate the bpf2go output from bpf/*.c (needs clang-19)
	BPF_CLANG=$(CLANG) $(GO) generate ./bpf/...

check-generate: ## fail if the committed bpf2go output differs from what `make generate` makes (needs clang-19)
	BPF_CLANG=$(CLANG) ./scripts/check-generate.sh

test: ## unit and netns integration tests (run as root: sudo make test)
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

test-unit: ## unit tests only; no root needed
	$(GO) test -short $(TESTFLAGS) $(PKGS)

bench: ## benchmarks; figures are recorded in docs/benchmarks.md
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

demo: build ## netns lab with a client, spooky and backends (run as root)
	./scripts/demo.sh

# The image's tool: the first of podman, buildah and docker that is installed.
IMAGE     ?= spooky:latest
IMAGE_TOOL ?= $(firstword $(foreach t,podman buildah docker,$(if $(shell command -v $(t) 2>/dev/null),$(t))))

image: ## OCI image spooky:latest (IMAGE=name:tag) of a static spooky, FROM scratch; podman, buildah or docker
	@if [ -z "$(IMAGE_TOOL)" ]; then echo "make image: needs podman, buildah or docker; none is installed" >&2; exit 1; fi
	rm -rf $(BIN)/image && mkdir -p $(BIN)/image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/image/spooky ./cmd/spooky
	$(if $(filter buildah,$(IMAGE_TOOL)),buildah bud,$(IMAGE_TOOL) build) -t $(IMAGE) -f deploy/container/Containerfile $(BIN)/image

clean: ## remove build output and leftover lab namespaces
	rm -rf $(BIN)
	-./scripts/demo.sh clean
