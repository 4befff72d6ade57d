"""Learngenes: compact shared weights from which ViTs of many sizes are recomposed.

Methods: ``ldr`` (linear decomposition with polynomial coefficients; TLEG is its 2-learngene
``linear`` basis) and ``lets`` (learnable width/depth transformations).
"""
