"""Layer 2, operators: the search space, one grammar every strategy shares.

``space``: :class:`SearchSpace` (the paper's grammar, its sizes and draws);
``deap_ops``: its DEAP representation and variation (``rule_to_tree``, ``tree_to_rule``,
``Variation``; GP); ``tokens``: its prefix tokens with validity masks (``TokenGrammar``;
the RL controller)."""
