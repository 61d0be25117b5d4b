"""Layer 3, the search space: one grammar every strategy shares (``space``), its DEAP
representation and variation (``deap_ops``, GP) and its prefix tokens with validity
masks (``tokens``, the RL controller)."""
