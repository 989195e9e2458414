#!/usr/bin/env bash
# check-generate.sh — fails if the committed bpf2go output in bpf/
# (*_bpfel.go, *_bpfel.o and the test-only *_bpfel_test.go, *_bpfel_test.o)
# is not exactly what bpf/*.c and bpf/gen.go generate.
#
#   make check-generate            # BPF_CLANG=$(CLANG), clang-19 by default
#   BPF_CLANG=clang-19 scripts/check-generate.sh
#
# Building and testing use the committed objects and need no clang, so
# nothing else notices a .c edit that was never regenerated, or objects that
# no longer match their source. The programs build only against bpf/include
# and the vendored bpf/headers (-nostdinc), and bpf2go strips paths and the
# compiler's ident, so the same clang makes the same bytes on every machine.
#
# It generates in a scratch copy of go.mod, go.sum and bpf/ with the
# generated files removed, so the working tree is left alone and a file that
# no go:generate line makes any more is caught as well.
set -euo pipefail
cd "$(dirname "$0")/.."

clang=${BPF_CLANG:-clang-19}
# bpf2go strips DWARF with the llvm-strip of the same version suffix.
base=${clang##*/}
strip=llvm-strip${base#clang}
if ! command -v "$clang" >/dev/null || ! command -v "$strip" >/dev/null; then
	echo "check-generate: needs $clang and $strip (Debian: apt-get install clang-19 llvm-19)" >&2
	exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp go.mod go.sum "$scratch"/
cp -r bpf "$scratch"/bpf
rm -f "$scratch"/bpf/*_bpfel.* "$scratch"/bpf/*_bpfel_test.*
(cd "$scratch" && BPF_CLANG=$clang go generate ./bpf/...)

shopt -s nullglob
differ=()
for made in "$scratch"/bpf/*_bpfel.* "$scratch"/bpf/*_bpfel_test.*; do
	f=bpf/${made##*/}
	if [ ! -e "$f" ]; then
		differ+=("$f (generated, but not in the tree)")
	elif ! cmp -s "$made" "$f"; then
		differ+=("$f (differs)")
	fi
done
for f in bpf/*_bpfel.* bpf/*_bpfel_test.*; do
	[ -e "$scratch/$f" ] || differ+=("$f (no go:generate line in bpf/gen.go makes it; remove it)")
done

if [ ${#differ[@]} -gt 0 ]; then
	{
		echo "check-generate: the bpf2go output in bpf/ is not what bpf/*.c and bpf/gen.go generate with $("$clang" --version | head -1):"
		printf '  %s\n' "${differ[@]}"
		echo "Fix: run \`make generate\` (needs clang-19 and llvm-19) and commit the files above."
	} >&2
	exit 1
fi

# CI checks a clean clone; a developer may have regenerated but not committed.
if [ -n "$(git status --porcelain -- 'bpf/*_bpfel.*' 'bpf/*_bpfel_test.*' 2>/dev/null)" ]; then
	echo "check-generate: bpf/ matches its sources, but these generated files are not committed yet:"
	git status --short -- 'bpf/*_bpfel.*' 'bpf/*_bpfel_test.*'
	exit 0
fi
echo "check-generate: bpf/*_bpfel.{go,o} and *_bpfel_test.{go,o} match bpf/*.c ($("$clang" --version | head -1))"
