"""Preference pairs: `iterpref.pairs.build` turns debugging trajectories into filtered pairs,
`iterpref.pairs.diff` is the line diff (Algorithm 1) and its character spans.

Nothing is imported here: training and reporting load `diff` alone, without the pair building.
"""
