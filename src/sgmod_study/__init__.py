"""Sgmod study toolkit: the Sgmod activation, models, data and training for Lightning + Hydra."""
