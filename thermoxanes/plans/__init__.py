"""bluesky plans: energy grids, XANES sweeps and heating programs.

Plans import bluesky only; devices arrive as arguments typed by ``bluesky.protocols``.
"""
