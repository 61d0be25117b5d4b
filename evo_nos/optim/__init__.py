"""Layer 1, optim: any rule as a ``torch.optim`` optimizer.

``standalone`` (the torch-only optimizer base, copied verbatim into exports) ->
``kernels`` (a rule's update direction, generated from the primitive table) ->
``optimizer`` (:class:`RuleOptimizer`), ``schedules`` (the paper's lr schedules),
``export`` (a rule as a standalone ``.py`` file and its JSON spec: ``export`` -- at the
package top ``evo_nos.export_optimizer`` --, ``export_source``, ``export_spec``).

Here: ``RuleOptimizer``, ``LinearCosineDecay``, ``NoisyLinearCosineDecay``.
"""
from evo_nos.optim.optimizer import RuleOptimizer
from evo_nos.optim.schedules import LinearCosineDecay, NoisyLinearCosineDecay

__all__ = ["RuleOptimizer", "LinearCosineDecay", "NoisyLinearCosineDecay"]
