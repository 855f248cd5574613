"""Swirl's diffusion model: a DDPM on the 2D swiss roll, in pure PyTorch.

Nothing in this package knows about HTTP; ``app/`` imports it, never the reverse.
"""
