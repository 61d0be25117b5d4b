"""Layer 8, experiments: what is built from searches, as plain functions (no argparse):
``campaign`` (strategies x seeds on one preset and budget), ``references`` (the known
rules scored by the same backend), ``compare`` (the head-to-head report) and
``transfer`` (winners retrained on held-out settings)."""
