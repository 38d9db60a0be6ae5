"""ddnnsim: discrete-event simulation of distributed multi-exit DNNs (no torch in this package)."""

__version__ = "0.1.0"
