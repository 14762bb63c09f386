"""Campaign planning: a spec in, a budgeted, randomized plan a manager can approve out.

:mod:`.spec` (what the manager asks for, and its checks), :mod:`.allocation` (the
multiple-choice knapsack), :mod:`.randomize` (keyed, reproducible holdout and exploration),
:mod:`.plan` (the plan as arrays), :mod:`.summary` (the Markdown the approver reads) and
:mod:`.output` (the plan folder, committed atomically). The step that loads data and models
is :func:`flashsale_ml.steps.plan_campaign`.
"""
