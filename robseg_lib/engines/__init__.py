"""Engines: evaluation (SEA, resumable and sharded), training (clean, AT, PIR-AT), pre-training, the model zoo.

The second layer of the stack: engines build on the core (params, paths, data, models, attacks, metrics, checks)
and never import the book support or the command line. Within the layer ``zoo`` sits on ``train`` and
``pretrain``, and ``evaluate`` on ``zoo``.
"""
