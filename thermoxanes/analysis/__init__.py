"""Per-pixel XANES analysis: numpy, numba, scipy and scikit-image only.

Never imports bluesky, ophyd or zmq (see DESIGN.md, layers).
"""
