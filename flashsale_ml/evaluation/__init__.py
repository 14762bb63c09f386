"""Metrics shared by training reports, promotion gates and campaign evaluation.

Every function validates its inputs first (shapes, ranges, classes) and raises ``ValueError``
naming what is wrong, then computes. Modules: :mod:`.binary` (ranking and calibration of
probabilities), :mod:`.bootstrap` (paired bootstrap of any per-row statistic).
"""
