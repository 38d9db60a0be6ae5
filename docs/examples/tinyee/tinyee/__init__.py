"""An example ddnnsim plug-in: a small early-exit CNN (``nets``) and a bars dataset (``data``)."""
