"""Sample physics with ground truth, simulated devices and (later) caproto IOCs.

Only ``thermoxanes.profiles`` and ``thermoxanes.cli`` import this package at run time.
"""
