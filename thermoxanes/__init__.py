"""thermoxanes: live acquisition and streaming analysis for in situ heating TXM XANES.

Layers (imports point down only): ``cli`` -> ``profiles`` -> ``devices``/``simulators``;
``plans`` (bluesky only); ``streaming`` -> ``analysis`` (numpy, numba, scipy, scikit-image).
"""

__version__ = "0.1.0"
