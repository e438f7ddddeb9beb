"""Beamline profiles as data (TOML validated by pydantic) and the loader that builds devices."""
