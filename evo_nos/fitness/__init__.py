"""Layer 3, fitness: rules in, Evaluations out.

What its modules offer (import from the module)::

    evaluation  Evaluation (plain data: a rule's score, lr sweep, status)
    tasks       Task, load_task, presets, default_preset (presets in presets/*.toml)
    backend     FitnessBackend (cache, screen, joblib/dask/ray workers)
    standin     StandInBackend (a cheap stand-in fitness: closeness to a target rule)
    factory     make_backend (a backend from a config)
    train       run_protocol, score_rule (the one training loop and lr-sweep protocol)
    probe       probe_updates (a rule's directions on fixed gradients)
    screen      screen, fingerprint_of (cheap checks and the functional fingerprint)
    data        load_images, parse_data_spec, synthetic_images
    models      make_child, make_resnet
    packed      score_rules (several children trained in one network)
    heldout     load_heldout_task, score_optimizer (the transfer check's tasks)
"""
