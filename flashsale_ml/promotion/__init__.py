"""Champion/challenger promotion: gates as data, a pure decision, and the flow that applies it.

* :mod:`.gates` – what a model kind's gates are (metric, direction, bound, tolerance, primary);
* :mod:`.holdout` – the newest sale both models are judged on;
* :mod:`.behaviour` – behavioural checks of a scoring function;
* :mod:`.decision` – ``decide_promotion``: evaluations in, a :class:`Decision` out, no I/O;
* :mod:`.flow` – gathers the evidence from the registry, records it, applies the decision.
"""
