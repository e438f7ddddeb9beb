"""ophyd device classes for real EPICS hardware (pyepics underneath)."""
