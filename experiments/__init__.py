"""The spec language: load TOML experiment specs, validate, resolve and hash them.

Pure Python: no database, no torch. Import the submodules you need (experiments.loader,
experiments.schema...); this package imports nothing, so the CLI starts quickly.
"""
