"""Fuzz targets for the pure codecs and parsers; see docs/fuzzing.md.

Each target module defines `TARGET`, a `Target` whose `check(data)` runs one
input and asserts the module's properties; `fuzz.run` drives a target with
hypothesis (everywhere) or atheris (libFuzzer, coverage-guided, where it is
installed). Seed corpora live in `fuzz/corpus/<target>/`.
"""
