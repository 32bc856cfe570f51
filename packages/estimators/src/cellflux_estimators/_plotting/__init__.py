"""Plots of estimator results (``cf.pl``); matplotlib is imported only here."""
