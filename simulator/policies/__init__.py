"""Exit and partition policies, registered by name (see ``base.registry``).

Importing the package registers the built-in policies; ``base`` imports none of them, so the
imports run one way: this package -> multiview, parallel, partition, tiered -> base.
"""

from simulator.policies import multiview, parallel, partition, tiered  # noqa: F401  (registration)
