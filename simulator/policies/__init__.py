"""Exit and partition policies, registered by name (see ``base.registry``)."""
