"""Storage: the embedded tiled catalog (``catalog``), derived maps beside the raw runs
(``results``), reading stored runs back (``runs``), replay through the wire protocol
(``replay``) and export to FXI/TXM-Sandbox HDF5 and TIFF (``export``); see
``docs/storage.md``."""
