package config

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Limits on what spooky reads as configuration. A file past any of them is
// refused with an error that names the limit, so that whatever a reload
// finds, the running daemon neither runs out of memory nor hangs.
const (
	// MaxFileSize bounds the configuration file. The YAML parser's cost grows
	// faster than the file (measured: 1 MiB of one flow list takes about 8 s
	// and 600 MB to parse, 4 MiB about 30 s and 2.3 GB), while a file that
	// fills every XDP map (256 services, 4096 backends) in block style, a
	// comment on every backend, is about 550 KiB.
	MaxFileSize = 1 << 20
	// MaxNesting bounds how deeply lists and mappings nest. The parser
	// recurses once per level; spooky's own schema needs fewer than 10.
	MaxNesting = 64
	// MaxValues bounds the values (scalars, lists and mappings) the decoder
	// builds, counting each use of an alias or merge key anew: without it a
	// few kilobytes of aliases of aliases expand exponentially ("billion
	// laughs"). A configuration that fills every XDP map has about 25,000.
	MaxValues = 1 << 18
	// MaxPEMFileSize bounds a certificate, key or CA file. A long chain or a
	// CA bundle is tens of kilobytes; Mozilla's whole root store is about
	// 200 KiB.
	MaxPEMFileSize = 1 << 20
	// MaxProblems bounds the problems an error lists; the rest are counted.
	MaxProblems = 100
)

// maxPath is PATH_MAX on Linux: no longer path opens (ENAMETOOLONG), so
// validation refuses one without repeating it in the error.
const maxPath = 4096

// maxEcho is how much of a value from the file an error message repeats:
// enough to recognise it, not so much that a huge value floods the log.
const maxEcho = 64

// clip shortens s to at most n bytes of text (on a rune boundary), marking
// the cut with "…", so error messages stay short whatever the file holds.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// echo is clip to maxEcho, for values quoted in error messages.
func echo(s string) string { return clip(s, maxEcho) }

// sizeText formats a size and the limit it exceeds in binary units ("50 MiB",
// "1 MiB"), falling back to exact bytes where rounding would make the two
// look equal.
func sizeText(size, limit int64) (string, string) {
	s, l := humanSize(size), humanSize(limit)
	if s == l {
		return fmt.Sprintf("%d bytes", size), fmt.Sprintf("%d bytes", limit)
	}
	return s, l
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	text := strconv.FormatFloat(v, 'f', 1, 64)
	if len(text) > 2 && text[len(text)-2:] == ".0" {
		text = text[:len(text)-2]
	}
	return text + " " + suffix
}
