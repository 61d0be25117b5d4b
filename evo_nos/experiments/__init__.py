"""Layer 7, experiments: what is built from searches, as plain functions (no argparse).

What its modules offer (import from the module)::

    campaign    CampaignPlan, run_campaign (strategies x seeds on one preset and budget)
    references  score_references, load_references (the known rules, same backend)
    compare     compare, load_searches (the head-to-head report)
    transfer    run_suite, load_suite, write_report (winners retrained on held-out tasks)
    fidelity    measure, summarize (a cheap preset against the reference one)
"""
