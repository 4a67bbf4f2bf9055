"""Discrete VAE experiment (issue #6, paper §5.2): data, sigmoid-belief-network models and training.

Run it through the script ``experiments/vae.py``; these modules are importable with ``experiments/``
on ``sys.path`` (``from vae import data, models, train``).
"""
